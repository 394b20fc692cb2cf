"""Safe, strict loading of the published IMTalker checkpoints.

Typical use (runs in the model-conversion process, on its main thread):

    weights = renderer_state_dict(Path("renderer.ckpt"))
    load_strict(renderer, weights, computed_buffers=renderer_computed_names)

- `safe_read`: read torch/Lightning/safetensors files without executing anything from them.
- `layouts`: pick the renderer / generator / wav2vec2 state dicts out of the published layouts.
- `strict`: load into a module, one error listing every missing/unexpected/mis-shaped key.
- `safetensors_io`: atomic safetensors writing; one-time conversion of a verified checkpoint.
"""

from models.checkpoint.errors import (
    CheckpointError,
    CheckpointLayoutError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    ModelVersionError,
    ModelVersionMismatchError,
    StateDictMismatchError,
    UnknownModelVersionError,
    UnsafeCheckpointError,
)
from models.checkpoint.layouts import (
    GeneratorWeights,
    StateDict,
    generator_state_dicts,
    renderer_state_dict,
    wav2vec2_names,
    wav2vec2_state_dict,
    wav2vec2_weights_file,
)
from models.checkpoint.safe_read import INERT_GLOBALS, InertNamespace, read_checkpoint
from models.checkpoint.safetensors_io import (
    CheckpointKind,
    convert_to_safetensors,
    write_safetensors,
)
from models.checkpoint.strict import check_fits, computed_buffer_names, load_strict

__all__ = [
    "INERT_GLOBALS",
    "CheckpointError",
    "CheckpointKind",
    "CheckpointLayoutError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "GeneratorWeights",
    "InertNamespace",
    "ModelVersionError",
    "ModelVersionMismatchError",
    "StateDict",
    "StateDictMismatchError",
    "UnknownModelVersionError",
    "UnsafeCheckpointError",
    "check_fits",
    "computed_buffer_names",
    "convert_to_safetensors",
    "generator_state_dicts",
    "load_strict",
    "read_checkpoint",
    "renderer_state_dict",
    "wav2vec2_names",
    "wav2vec2_state_dict",
    "wav2vec2_weights_file",
    "write_safetensors",
]
