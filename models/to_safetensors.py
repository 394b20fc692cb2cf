"""One-time conversion of verified checkpoints to safetensors (`python -m models.to_safetensors`).

Reads a folder laid out like the published model repository through the safe loader, checks
every part strictly against our modules, and writes `renderer.safetensors`,
`generator.safetensors` and `wav2vec2-base-960h/model.safetensors` (plus the wav2vec2 JSON
files) into another folder. `models.loading` prefers these files when present: loading them
needs no unpickling at all. Runs on the main thread of its own process.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from models.audio_encoder import AudioEncoder
from models.checkpoint import (
    CheckpointError,
    CheckpointKind,
    ModelVersionMismatchError,
    StateDict,
    convert_to_safetensors,
)
from models.loading import (
    GENERATOR_FILE,
    GENERATOR_SAFETENSORS,
    RENDERER_FILE,
    RENDERER_SAFETENSORS,
    WAV2VEC2_DIR,
    WAV2VEC2_SAFETENSORS,
)
from models.versioning import build_generator, build_renderer, checkpoint_version
from runtime.model.versions import ModelVersion

logger = logging.getLogger(__name__)

ModuleOrFactory = nn.Module | Callable[[StateDict], nn.Module]


def convert_folder(weights: Path, out: Path) -> list[Path]:
    """Convert all three checkpoints, each verified against the modules of the version its keys
    say (a renderer and generator of different versions are refused); returns the files
    written."""
    (out / WAV2VEC2_DIR).mkdir(parents=True, exist_ok=True)
    versions: dict[str, ModelVersion] = {}

    def renderer_for(state: StateDict) -> nn.Module:
        versions["renderer"] = checkpoint_version("renderer", state)
        return build_renderer(versions["renderer"])

    def generator_for(state: StateDict) -> nn.Module:
        found = checkpoint_version("generator", state)
        if found != versions["renderer"]:
            raise ModelVersionMismatchError(renderer=versions["renderer"], generator=found)
        return build_generator(found)

    jobs: tuple[tuple[Path, Path, CheckpointKind, ModuleOrFactory], ...] = (
        (weights / RENDERER_FILE, out / RENDERER_SAFETENSORS, "renderer", renderer_for),
        (weights / GENERATOR_FILE, out / GENERATOR_SAFETENSORS, "generator", generator_for),
        (weights / WAV2VEC2_DIR, out / WAV2VEC2_SAFETENSORS, "wav2vec2", AudioEncoder()),
    )
    written = []
    for src, dst, kind, module in jobs:
        convert_to_safetensors(src, dst, kind=kind, module=module)
        written.append(dst)
    for config in sorted((weights / WAV2VEC2_DIR).glob("*.json")):
        target = out / WAV2VEC2_DIR / config.name
        shutil.copyfile(config, target)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.to_safetensors", description=__doc__)
    parser.add_argument("--weights", type=Path, required=True, help="published-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the safetensors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        for path in convert_folder(args.weights, args.out):
            logger.info("wrote %s", path)
    except CheckpointError as exc:
        logger.error("conversion failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
