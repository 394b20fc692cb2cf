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
from collections.abc import Sequence
from pathlib import Path

from models.audio_encoder import AudioEncoder
from models.checkpoint import CheckpointError, convert_to_safetensors
from models.generator.generator import FMGenerator
from models.loading import (
    GENERATOR_FILE,
    GENERATOR_SAFETENSORS,
    RENDERER_FILE,
    RENDERER_SAFETENSORS,
    WAV2VEC2_DIR,
    WAV2VEC2_SAFETENSORS,
)
from models.renderer.renderer import IMTRenderer

logger = logging.getLogger(__name__)


def convert_folder(weights: Path, out: Path) -> list[Path]:
    """Convert all three checkpoints; returns the files written."""
    (out / WAV2VEC2_DIR).mkdir(parents=True, exist_ok=True)
    jobs = (
        (weights / RENDERER_FILE, out / RENDERER_SAFETENSORS, "renderer", IMTRenderer()),
        (weights / GENERATOR_FILE, out / GENERATOR_SAFETENSORS, "generator", FMGenerator()),
        (weights / WAV2VEC2_DIR, out / WAV2VEC2_SAFETENSORS, "wav2vec2", AudioEncoder()),
    )
    written = []
    for src, dst, kind, module in jobs:
        convert_to_safetensors(src, dst, kind=kind, module=module)  # type: ignore[arg-type]
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
