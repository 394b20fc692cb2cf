"""Structural checks of checkpoints before they are trusted, run in a child process (caller's
thread waits; a store import or download runs it once per batch of files).

Reading a checkpoint needs torch, which the runtime never imports, so this runs
`python -m models.inspect_checkpoint --json PART=FILE...` (like the compiled-graph cache runs
the exporter) and parses its JSON: per file, whether it passed (CRC of the zip container, the
safe unpickler, the published layout, every key and shape of a known model version) and which
model version it is. Verdicts are remembered per process by (part, SHA-256): the same bytes
always get the same verdict.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

from runtime.model import convert_extra
from runtime.model.child_env import child_env, project_root
from runtime.model.store.errors import ModelStoreError
from runtime.model.versions import VERSIONS

logger = logging.getLogger(__name__)

INSPECTOR_MODULE = "models.inspect_checkpoint"
PARTS = ("renderer", "generator", "wav2vec2")
_TIMEOUT_S = 1800.0


class InspectionError(ModelStoreError):
    """The inspector could not run or answered nonsense (not a verdict on a file)."""


@dataclass(frozen=True, kw_only=True)
class FileVerdict:
    part: str
    ok: bool
    model_version: str | None
    """"v1", "v2" for a renderer or generator that passed; None otherwise and for wav2vec2."""
    problem: str | None
    """One or two sentences for the user (without the file name)."""


def inspector_available() -> bool:
    """Whether `models.inspect_checkpoint` can be run, found without importing anything."""
    if (project_root() / "models" / "inspect_checkpoint.py").is_file():
        return True
    spec = importlib_util.find_spec("models")
    locations = spec.submodule_search_locations if spec is not None else None
    return any((Path(loc) / "inspect_checkpoint.py").is_file() for loc in locations or ())


_memo: dict[tuple[str, str], FileVerdict] = {}
_memo_lock = threading.Lock()


def _verdict(part: str, raw: Any) -> FileVerdict:
    if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
        raise InspectionError(f"the checkpoint inspector gave no verdict on the {part} file")
    version = raw.get("model_version")
    if version is not None and version not in VERSIONS:
        raise InspectionError(f"the checkpoint inspector named an unknown version {version!r}")
    if raw.get("detail"):
        logger.debug("inspector, %s: %s", part, raw["detail"])
    return FileVerdict(
        part=part,
        ok=raw["ok"],
        model_version=version if raw["ok"] else None,
        problem=None if raw["ok"] else str(raw.get("problem") or "it failed its checks."),
    )


def inspect_files(
    files: Mapping[str, Path],
    *,
    digests: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, FileVerdict]:
    """Verdicts on `files` (part -> path; parts from `PARTS`). `digests` (part -> SHA-256 of
    the file's bytes) lets a verdict already reached in this process be reused."""
    out: dict[str, FileVerdict] = {}
    todo: dict[str, Path] = {}
    for part, path in files.items():
        if part not in PARTS:
            raise ValueError(f"unknown model part {part!r}")
        digest = (digests or {}).get(part)
        with _memo_lock:
            known = _memo.get((part, digest)) if digest else None
        if known is not None:
            out[part] = known
        else:
            todo[part] = path
    if not todo:
        return out
    if command is None and convert_extra.missing_modules():
        raise InspectionError(convert_extra.hint())
    argv = [*(command or [sys.executable, "-m", INSPECTOR_MODULE]), "--json"]
    argv += [f"{part}={path}" for part, path in todo.items()]
    logger.info("inspecting %s", ", ".join(f"{p} ({path.name})" for p, path in todo.items()))
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=child_env(),
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InspectionError(f"the checkpoint inspector could not run: {exc}") from exc
    if done.returncode != 0:
        if convert_extra.missing_in_output(done.stderr.splitlines()):
            raise InspectionError(convert_extra.hint())
        tail = "\n".join(done.stderr.strip().splitlines()[-5:]) or "(no error output)"
        raise InspectionError(
            f"the checkpoint inspector failed (exit code {done.returncode}): {tail}"
        )
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        verdicts = dict(answer["files"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InspectionError("the checkpoint inspector's answer was unreadable") from exc
    for part in todo:
        verdict = _verdict(part, verdicts.get(part))
        out[part] = verdict
        digest = (digests or {}).get(part)
        if digest:
            with _memo_lock:
                _memo[(part, digest)] = verdict
    return out
