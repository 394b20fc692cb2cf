"""Write recipe-weight checkpoints in the published IMTalker file formats.

    python -m models.recipe_checkpoints OUT_DIR [--extras] [--golden-dir DIR] [--version v1|v2]

writes OUT_DIR/renderer.ckpt, OUT_DIR/generator.ckpt and OUT_DIR/wav2vec2-base-960h/ holding
the deterministic recipe weights of tests/data/golden (see models/recipe.py), laid out exactly
like the published files of the chosen model version. `--golden-dir` is always the golden root
(tests/data/golden): v1's manifests sit in it, every later version's in the subfolder of its
name (`golden_version_dir`), so the loading path can be tested end to end without the real ones.
Every manifest entry is written, "computed" buffers included (a real checkpoint carries its
persistent buffers): their values are built here from the reference's definitions.

With --extras the Lightning checkpoints also carry what a training run leaves in them
(hyper-parameters as a Lightning `AttributeDict` holding an `argparse.Namespace`, optimizer and
loop state, epoch/step/version, discriminator weights), so the safe loader is exercised on them.
Lightning is not installed: the AttributeDict is pickled under its Lightning name from a
throw-away module registered in `sys.modules` only while the file is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from models.generator.fmt import rope_inv_freq
from models.recipe import Manifest, ManifestEntry, golden_version_dir, read_manifest, recipe_tensor
from runtime.model.versions import V1, V2, VERSIONS, ModelVersion, version

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The golden data ships with the tests (tests/data); an installed wheel has no default.
DEFAULT_GOLDEN_DIR = REPO_ROOT / "tests" / "data" / "golden"
ATTRIBUTE_DICT_GLOBAL = "pytorch_lightning.utilities.parsing.AttributeDict"
WAV2VEC2_FOLDER = "wav2vec2-base-960h"
FMT_ATTENTION_WINDOW = 5  # reference default (`--attention_window`)
FMT_HEAD_DIM = 64  # hidden 512 over 8 heads

# transformers' Wav2Vec2Config for facebook/wav2vec2-base-960h (a 32-token CTC model).
WAV2VEC2_CONFIG: dict[str, object] = {
    "architectures": ["Wav2Vec2ForCTC"],
    "model_type": "wav2vec2",
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "attention_dropout": 0.1,
    "bos_token_id": 1,
    "conv_bias": False,
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1,
    "final_dropout": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 10,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_prob": 0.05,
    "num_attention_heads": 12,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "vocab_size": 32,
}

FEATURE_EXTRACTOR_CONFIG: dict[str, object] = {
    "do_normalize": True,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": 16000,
}


@dataclass(frozen=True)
class RecipeCheckpointPaths:
    renderer: Path
    generator: Path
    wav2vec2_dir: Path


# ---- values of "computed" entries, from the reference's definitions --------------------------


def blur_kernel(*, gain: float) -> torch.Tensor:
    """StyleGAN2 [1, 3, 3, 1] blur, normalised to sum 1, times `gain` (factor**2 on upsampling)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k2 = k[None, :] * k[:, None]  # (4, 4)
    return k2 / k2.sum() * gain


def relative_position_index(window: int) -> torch.Tensor:
    """Swin (N, N) int64 index into the (2w-1)**2 bias table, N = window**2."""
    pos = torch.arange(window * window)
    y, x = pos // window, pos % window
    dy = y[:, None] - y[None, :] + window - 1  # (N, N)
    dx = x[:, None] - x[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def shifted_window_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """Swin (num_windows, N, N) float mask: -100 between tokens from different shifted regions."""
    coord = torch.arange(resolution)
    band = (coord >= resolution - window).long() + (coord >= resolution - shift).long()  # 0,1,2
    region = band[:, None] * 3 + band[None, :]  # (H, W)
    n = resolution // window
    windows = region.view(n, window, n, window).permute(0, 2, 1, 3).reshape(n * n, -1)  # (nW, N)
    differs = windows[:, None, :] != windows[:, :, None]  # (nW, N, N)
    return torch.zeros(differs.shape).masked_fill(differs, -100.0)


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """The FMT position table: angles as Python floats, rounded to float32, then sin/cos."""
    angles = [[p / (10000 ** (2 * (j // 2) / dim)) for j in range(dim)] for p in range(positions)]
    table = torch.tensor(angles, dtype=torch.float32)  # (P, D)
    table[:, 0::2] = torch.sin(table[:, 0::2])
    table[:, 1::2] = torch.cos(table[:, 1::2])
    return table


def alignment_mask(frames: int, window: int) -> torch.Tensor:
    """(T, T) bool, True where frame i may not attend to frame j (|i - j| > window)."""
    idx = torch.arange(frames)
    return (idx[None, :] - idx[:, None]).abs() > window


_DOWNSAMPLE_BLUR = re.compile(r"\.res_blocks\.\d+\.(conv2|skip)\.0\.kernel$")


def computed_value(entry: ManifestEntry) -> torch.Tensor:
    """The value the reference module constructs for one `recipe == "computed"` entry."""
    key, shape = entry.key, entry.shape
    value: torch.Tensor
    if key.endswith("num_batches_tracked"):
        value = torch.tensor(0, dtype=torch.int64)
    elif key.endswith(".conv.blur.kernel"):  # ModulatedConv2d(upsample=True): gain factor**2
        value = blur_kernel(gain=4.0)
    elif _DOWNSAMPLE_BLUR.search(key):  # ConvLayer(downsample=True)
        value = blur_kernel(gain=1.0)
    elif key.endswith(".relative_position_index"):
        value = relative_position_index(math.isqrt(shape[0]))
    elif key.endswith(".attn_mask"):  # (num_windows, N, N) of the shifted block
        window = math.isqrt(shape[1])
        value = shifted_window_mask(math.isqrt(shape[0]) * window, window, window // 2)
    elif key == "fmt.pos_embed":
        value = sinusoid_table(shape[1], shape[2])[None]
    elif key == "fmt.alignment_mask":
        value = alignment_mask(shape[0], FMT_ATTENTION_WINDOW)
    elif key == "fmt.rotary_emb.inv_freq" and V2.rope_base is not None:
        # Every RoPE version so far uses v2's base; a new base means a new rule here.
        value = rope_inv_freq(FMT_HEAD_DIM, V2.rope_base)
    else:
        raise ValueError(f"no rule for computed entry {key!r}")
    if tuple(value.shape) != shape or str(value.dtype).removeprefix("torch.") != entry.dtype:
        raise ValueError(f"{key}: built {value.dtype} {tuple(value.shape)}, manifest says {entry}")
    return value


def manifest_state_dict(manifest: Manifest) -> OrderedDict[str, torch.Tensor]:
    """Every manifest entry, in manifest order: recipe weights and computed buffers."""
    return OrderedDict(
        (e.key, recipe_tensor(e) if e.recipe == "random" else computed_value(e))
        for e in manifest.entries
    )


# ---- Lightning-like extras ---------------------------------------------------------------------


@contextmanager
def picklable_as(qualified_name: str) -> Iterator[type[dict[str, object]]]:
    """A dict subclass that pickles under `qualified_name`, importable only inside the block."""
    module_name, _, class_name = qualified_name.rpartition(".")
    if module_name in sys.modules:
        raise RuntimeError(f"{module_name} is already imported; refusing to shadow it")
    cls: type[dict[str, object]] = type(
        class_name, (dict,), {"__module__": module_name, "__qualname__": class_name}
    )
    parts = module_name.split(".")
    added = [
        n for n in (".".join(parts[: i + 1]) for i in range(len(parts))) if n not in sys.modules
    ]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    setattr(sys.modules[module_name], class_name, cls)
    try:
        yield cls
    finally:
        for name in reversed(added):
            del sys.modules[name]


def _adam_state(shapes: list[tuple[int, ...]]) -> dict[str, object]:
    g = torch.Generator().manual_seed(7)
    state = {
        i: {
            "step": torch.tensor(1200.0),
            "exp_avg": torch.randn(s, generator=g) * 1e-3,
            "exp_avg_sq": torch.rand(s, generator=g) * 1e-6,
        }
        for i, s in enumerate(shapes)
    }
    group = {"lr": 1e-4, "betas": (0.5, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    return {"state": state, "param_groups": [{**group, "amsgrad": False, "params": list(state)}]}


def _lightning_checkpoint(
    weights: OrderedDict[str, torch.Tensor],
    hyper_parameters: dict[str, object],
    attribute_dict: type[dict[str, object]],
) -> dict[str, object]:
    opt = argparse.Namespace(lr=1e-4, batch_size=8, fps=25.0, dataset="/data/train", seed=42)
    first = [tuple(v.shape) for v in list(weights.values())[:2]]
    # nn.Module.state_dict() attaches per-module versions; pickled as BUILD on the OrderedDict.
    weights.__dict__["_metadata"] = {"": {"version": 1}}
    return {
        "epoch": 41,
        "global_step": 250_000,
        "pytorch-lightning_version": "2.1.3",
        "state_dict": weights,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"completed": 41}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None, 'mode': 'min'}": {
                "best_model_score": None,
                "best_model_path": "",
                "dirpath": "/exp/checkpoints",
                "last_model_path": "/exp/checkpoints/last.ckpt",
            }
        },
        "optimizer_states": [_adam_state(first)],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": attribute_dict({**hyper_parameters, "opt": opt}),
    }


def _discriminator_weights() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return {
        "disc.convs.0.0.weight": torch.randn(64, 3, 3, 3, generator=g),
        "disc.convs.0.1.bias": torch.zeros(64),
        "disc.final_linear.0.weight": torch.randn(1, 512, generator=g),
    }


# ---- writer ------------------------------------------------------------------------------------


def write_recipe_checkpoints(
    out_dir: Path,
    *,
    golden_dir: Path = DEFAULT_GOLDEN_DIR,
    extras: bool = False,
    attribute_dict_global: str = ATTRIBUTE_DICT_GLOBAL,
    version: str | ModelVersion = V1,
) -> RecipeCheckpointPaths:
    """Write renderer.ckpt, generator.ckpt and wav2vec2-base-960h/ of model `version` ("v1",
    "v2" or a ModelVersion) into `out_dir`. `golden_dir` is the golden root; the version's
    manifests are read from `golden_version_dir(golden_dir, version)`."""
    manifests = golden_version_dir(golden_dir, version)
    renderer_m = read_manifest(manifests / "renderer_manifest.json")
    generator_m = read_manifest(manifests / "generator_manifest.json")
    wav2vec2_m = read_manifest(manifests / "wav2vec2_manifest.json")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = RecipeCheckpointPaths(
        renderer=out_dir / "renderer.ckpt",
        generator=out_dir / "generator.ckpt",
        wav2vec2_dir=out_dir / WAV2VEC2_FOLDER,
    )

    wav2vec2 = manifest_state_dict(wav2vec2_m)
    w2v_dir = paths.wav2vec2_dir
    w2v_dir.mkdir(exist_ok=True)
    torch.save(wav2vec2, w2v_dir / "pytorch_model.bin")
    (w2v_dir / "config.json").write_text(json.dumps(WAV2VEC2_CONFIG, indent=2) + "\n")
    for name in ("preprocessor_config.json", "feature_extractor_config.json"):
        (w2v_dir / name).write_text(json.dumps(FEATURE_EXTRACTOR_CONFIG, indent=2) + "\n")

    renderer = OrderedDict(
        (renderer_m.checkpoint_key_prefix + k, v)
        for k, v in manifest_state_dict(renderer_m).items()
    )
    generator = OrderedDict(
        (generator_m.checkpoint_key_prefix + k, v)
        for k, v in manifest_state_dict(generator_m).items()
    )
    # The generator's AudioEncoder holds a Wav2Vec2Model: the folder's weights minus the CTC head.
    for key, value in wav2vec2.items():
        if key.startswith("wav2vec2."):
            name = key.removeprefix("wav2vec2.")
            generator[f"{generator_m.checkpoint_key_prefix}audio_encoder.wav2vec2.{name}"] = value

    if not extras:
        torch.save({"state_dict": renderer}, paths.renderer)
        torch.save({"state_dict": generator}, paths.generator)
    else:
        renderer.update(_discriminator_weights())
        with picklable_as(attribute_dict_global) as attribute_dict:
            torch.save(
                _lightning_checkpoint(renderer, {"kind": "renderer"}, attribute_dict),
                paths.renderer,
            )
            torch.save(
                _lightning_checkpoint(generator, {"kind": "generator"}, attribute_dict),
                paths.generator,
            )
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--extras", action="store_true", help="add Lightning training state")
    parser.add_argument(
        "--golden-dir", type=Path, default=DEFAULT_GOLDEN_DIR, help="the golden root folder"
    )
    parser.add_argument("--version", choices=sorted(VERSIONS), default=V1.name)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = write_recipe_checkpoints(
        args.out_dir, golden_dir=args.golden_dir, extras=args.extras, version=version(args.version)
    )
    for path in (paths.renderer, paths.generator, paths.wav2vec2_dir):
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
