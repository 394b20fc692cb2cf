"""Check checkpoints before anyone trusts them (main thread of a child process of the app).

    python -m models.inspect_checkpoint --json renderer=FILE generator=FILE wav2vec2=FILE

The model store runs this (through `runtime.model.inspection`) before it records a file's digest
as verified, so a file that conversion would refuse is never pinned. For each file, in order:

1. a torch zip checkpoint's CRC-32 of every member (a flipped or missing byte anywhere);
2. the safe reader (`models.checkpoint.safe_read`: allowlisted unpickler, nothing executed);
3. the published layout of that part (`models.checkpoint.layouts`);
4. renderer and generator: the model version from the keys (`models.versioning`), then every
   key and shape against that version's module, built on the meta device (no memory); the
   wav2vec2 weights against the audio encoder's.

Prints one JSON object: ``{"files": {PART: {"ok", "model_version", "problem", "detail"}}}``;
`problem` is one or two sentences for the user, `detail` the full key lists for a log. Exit
code 0 when every file was inspected (whatever was found), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.audio_encoder import AudioEncoder
from models.checkpoint import (
    CheckpointError,
    CheckpointLayoutError,
    StateDict,
    StateDictMismatchError,
    UnknownModelVersionError,
    UnsafeCheckpointError,
    check_fits,
    generator_state_dicts,
    renderer_state_dict,
    wav2vec2_state_dict,
)
from models.versioning import build_generator, build_renderer, checkpoint_version

logger = logging.getLogger(__name__)

PARTS = ("renderer", "generator", "wav2vec2")
_CHUNK = 8 << 20


class InspectionProblem(Exception):
    """One file's problem: `str()` for the user, `detail` for the log."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


def _check_zip_crc(path: Path) -> None:
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return  # safetensors (or not a checkpoint: the safe reader says so)
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                with archive.open(member) as data:
                    while data.read(_CHUNK):
                        pass
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InspectionProblem(
            "it is damaged: a checksum inside the file does not match (changed or missing "
            "bytes). Download or copy it again.",
            f"{path}: {type(exc).__name__}: {exc}",
        ) from exc


def _module_for(part: str, state: StateDict) -> tuple[nn.Module, str | None]:
    if part == "wav2vec2":
        with torch.device("meta"):
            return AudioEncoder(), None
    version = checkpoint_version("renderer" if part == "renderer" else "generator", state)
    with torch.device("meta"):
        module = build_renderer(version) if part == "renderer" else build_generator(version)
    return module, version.name


def _state(part: str, path: Path) -> StateDict:
    if part == "renderer":
        return renderer_state_dict(path)
    if part == "generator":
        return generator_state_dicts(path).model
    return wav2vec2_state_dict(path)


def inspect_file(part: str, path: Path) -> dict[str, Any]:
    """One file's verdict (see the module docstring); never raises for a bad file."""
    try:
        _check_zip_crc(path)
        try:
            state = _state(part, path)
        except UnsafeCheckpointError as exc:
            raise InspectionProblem(
                "it was refused: it holds instructions to run code when loaded ("
                + ", ".join(exc.globals_found)
                + "), which a model checkpoint never needs. Nothing from it was run.",
                str(exc),
            ) from exc
        except CheckpointLayoutError as exc:
            raise InspectionProblem(f"it is not an IMTalker {part} checkpoint.", str(exc)) from exc
        except CheckpointError as exc:
            raise InspectionProblem(
                "it is damaged or not a PyTorch checkpoint. Download or copy it again.", str(exc)
            ) from exc
        try:
            module, version = _module_for(part, state)
            check_fits(module, state)
        except UnknownModelVersionError as exc:
            raise InspectionProblem(str(exc)) from exc
        except StateDictMismatchError as exc:
            which = f"IMTalker {version}" if part != "wav2vec2" else "the wav2vec2 audio encoder"
            raise InspectionProblem(
                f"its weights do not fit {which} ({len(exc.missing)} missing, "
                f"{len(exc.unexpected)} unexpected, {len(exc.mismatched)} of the wrong shape). "
                "Download the model again.",
                exc.details,
            ) from exc
    except InspectionProblem as problem:
        logger.debug("%s (%s): %s", part, path, problem.detail)
        return {
            "ok": False,
            "model_version": None,
            "problem": str(problem),
            "detail": problem.detail,
        }
    except OSError as exc:
        return {"ok": False, "model_version": None, "problem": f"it cannot be read ({exc}).",
                "detail": str(exc)}  # fmt: skip
    return {"ok": True, "model_version": version, "problem": None, "detail": None}


def _pair(spec: str) -> tuple[str, Path]:
    part, sep, path = spec.partition("=")
    if not sep or part not in PARTS:
        raise argparse.ArgumentTypeError(f"expected PART=FILE with PART one of {PARTS}: {spec!r}")
    return part, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.inspect_checkpoint", description=__doc__
    )
    parser.add_argument("files", nargs="+", type=_pair, metavar="PART=FILE")
    parser.add_argument("--json", action="store_true", help="(the only output format)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    torch.set_num_threads(1)
    result = {"files": {part: inspect_file(part, path) for part, path in args.files}}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
