"""Pick our modules' state dicts out of the published IMTalker checkpoint layouts.

- `renderer.ckpt`: `{"state_dict": {"gen.<key>": tensor, ...}, ...}`; other prefixes
  (discriminator, ...) and other top-level entries (optimizer, hyper-parameters) are ignored.
- `generator.ckpt`: weights under `state_dict` (or `model`, or `state_dict.model`) with prefix
  `model.`; `model.audio_encoder.wav2vec2.*` (a copy of wav2vec2) is split off.
- `wav2vec2-base-960h/`: a `Wav2Vec2ForCTC` checkpoint; `wav2vec2.` is stripped, the CTC head
  (`lm_head.*`) and the training-only `masked_spec_embed` are dropped.
Flat files (e.g. our safetensors conversions) holding the same prefixed keys are accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoint.errors import CheckpointLayoutError, CheckpointNotFoundError
from models.checkpoint.safe_read import read_checkpoint

StateDict = dict[str, torch.Tensor]

RENDERER_PREFIX = "gen."
GENERATOR_PREFIX = "model."
AUDIO_ENCODER_PREFIX = "audio_encoder.wav2vec2."  # inside the generator, after `model.`
WAV2VEC2_PREFIX = "wav2vec2."
WAV2VEC2_FILES = ("model.safetensors", "pytorch_model.bin")  # preferred first: no pickle

# Newer torch/transformers save the positional conv's weight norm as a parametrization;
# our audio encoder uses the old names that the published pytorch_model.bin has.
_WEIGHT_NORM_RENAMES = {
    ".parametrizations.weight.original0": ".weight_g",
    ".parametrizations.weight.original1": ".weight_v",
}


@dataclass(frozen=True)
class GeneratorWeights:
    model: StateDict  # the flow-matching generator without its audio encoder
    audio_encoder: StateDict | None  # wav2vec2 weights stored in generator.ckpt, if any


def _describe(mapping: Mapping[str, object]) -> str:
    keys = [str(k) for k in mapping]
    shown = ", ".join(keys[:12])
    return f"{{{shown}{', ...' if len(keys) > 12 else ''}}} ({len(keys)} keys)"


def _as_mapping(obj: object, path: Path) -> Mapping[str, object]:
    if not isinstance(obj, Mapping):
        raise CheckpointLayoutError(
            f"{path}: expected a dict at the top level, got {type(obj).__name__}"
        )
    return obj


def _strip_prefix(container: Mapping[str, object], prefix: str, path: Path) -> StateDict:
    """Entries under `prefix`, prefix removed; all must be tensors and at least one must exist."""
    out: StateDict = {}
    for key, value in container.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointLayoutError(
                f"{path}: {key!r} should hold a tensor, got {type(value).__name__}"
            )
        out[key[len(prefix) :]] = value
    if not out:
        raise CheckpointLayoutError(f"{path}: no {prefix!r} weights in {_describe(container)}")
    return out


def renderer_state_dict(path: Path) -> StateDict:
    """The renderer's weights from `renderer.ckpt` (or a flat file with `gen.` keys)."""
    top = _as_mapping(read_checkpoint(path), path)
    container = _as_mapping(top["state_dict"], path) if "state_dict" in top else top
    return _strip_prefix(container, RENDERER_PREFIX, path)


def generator_state_dicts(path: Path) -> GeneratorWeights:
    """The generator's weights from `generator.ckpt`, with any wav2vec2 copy split off."""
    top = _as_mapping(read_checkpoint(path), path)
    container = _as_mapping(top["state_dict"], path) if "state_dict" in top else top
    if "model" in container:  # the reference loader accepts this nesting too
        container = _as_mapping(container["model"], path)
    weights = _strip_prefix(container, GENERATOR_PREFIX, path)
    model = {k: v for k, v in weights.items() if not k.startswith(AUDIO_ENCODER_PREFIX)}
    audio = {
        k[len(AUDIO_ENCODER_PREFIX) :]: v
        for k, v in weights.items()
        if k.startswith(AUDIO_ENCODER_PREFIX)
    }
    return GeneratorWeights(model=model, audio_encoder=wav2vec2_names(audio) if audio else None)


def wav2vec2_names(raw: Mapping[str, torch.Tensor]) -> StateDict:
    """Our audio encoder's names for wav2vec2 checkpoint entries (CTC head and mask dropped)."""
    out: StateDict = {}
    for key, value in raw.items():
        name = key[len(WAV2VEC2_PREFIX) :] if key.startswith(WAV2VEC2_PREFIX) else key
        if name.startswith("lm_head.") or name == "masked_spec_embed":
            continue
        for old, new in _WEIGHT_NORM_RENAMES.items():
            if name.endswith(old):
                name = name[: -len(old)] + new
        out[name] = value
    return out


def wav2vec2_weights_file(folder: Path) -> Path:
    """The weights file of a wav2vec2 folder (safetensors preferred when both exist)."""
    for name in WAV2VEC2_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointNotFoundError(folder / WAV2VEC2_FILES[-1])


def wav2vec2_state_dict(path: Path) -> StateDict:
    """Audio-encoder weights from a `wav2vec2-base-960h/` folder or one of its weight files."""
    file = wav2vec2_weights_file(path) if path.is_dir() else path
    top = _as_mapping(read_checkpoint(file), file)
    tensors: StateDict = {}
    for key, value in top.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointLayoutError(
                f"{file}: expected a flat name -> tensor table, but {key!r} holds "
                f"{type(value).__name__}"
            )
        tensors[str(key)] = value
    if not tensors:
        raise CheckpointLayoutError(f"{file}: no tensors")
    return wav2vec2_names(tensors)
