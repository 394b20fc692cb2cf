"""The model store's checks that concern model versions (caller's thread; the inspection runs
a child process): each checkpoint passes the inspector before it is trusted, and the store
never holds a renderer and a generator of different IMTalker versions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from runtime.model import inspection
from runtime.model.store.errors import ModelVersionConflictError, VerificationError
from runtime.model.store.records import ExpectedFile, StoreRecord

logger = logging.getLogger(__name__)

VERSIONED_PARTS = ("renderer", "generator")
"""The parts whose checkpoints carry the model version (wav2vec2 is the same in every one)."""


def recorded_version(record: StoreRecord, manifest: Sequence[ExpectedFile]) -> str | None:
    """The version both versioned checkpoints were recorded as, else None."""
    versions = {
        record.files[e.path].model_version if e.path in record.files else None
        for e in manifest
        if e.part in VERSIONED_PARTS
    }
    if len(versions) != 1:
        return None
    (version,) = versions
    return version


def inspect_candidates(
    manifest: Sequence[ExpectedFile], candidates: dict[str, tuple[Path, str]]
) -> dict[str, str | None]:
    """Run the checkpoint inspector on the checkpoints among `candidates` (relpath -> (file,
    SHA-256)); a file that fails raises VerificationError (the caller discards it). Returns
    the model version of each renderer and generator by relpath."""
    parts = {e.part: e.path for e in manifest if e.path in candidates and e.part is not None}
    if not parts:
        return {}
    if not inspection.inspector_available():
        logger.warning(
            "the checkpoint inspector (models.inspect_checkpoint) is not installed: "
            "%s stored after the format check only",
            ", ".join(parts.values()),
        )
        return {}
    verdicts = inspection.inspect_files(
        {part: candidates[rel][0] for part, rel in parts.items()},
        digests={part: candidates[rel][1] for part, rel in parts.items()},
    )
    failed = [(parts[p], v) for p, v in verdicts.items() if not v.ok]
    if failed:
        lines = [f"{rel}: {v.problem}" for rel, v in failed]
        raise VerificationError(" ".join(lines) + " Nothing was stored and no digest was recorded.")
    return {parts[p]: v.model_version for p, v in verdicts.items() if p in VERSIONED_PARTS}


def check_switch(
    manifest: Sequence[ExpectedFile], versions: dict[str, str | None], *, held: str | None
) -> None:
    """A deliberate switch (`import --replace`) brings both versioned checkpoints at once."""
    if not all(e.path in versions for e in manifest if e.part in VERSIONED_PARTS):
        raise ModelVersionConflictError(
            "--replace switches the whole model: import renderer.ckpt and generator.ckpt "
            "together. Nothing was stored."
        )
    new = next(iter({v for v in versions.values() if v is not None}), None)
    if held is not None and new is not None and held != new:
        logger.info("switching the model store from IMTalker %s to %s", held, new)


def check_versions(
    manifest: Sequence[ExpectedFile],
    record: StoreRecord,
    incoming: dict[str, str | None],
    *,
    switching: bool,
) -> None:
    """Refuse what would leave a renderer and a generator of different versions."""
    known = {rel: v for rel, v in incoming.items() if v is not None}
    if not known:
        return
    if len(set(known.values())) > 1:
        r, g = (known.get(e.path, "?") for e in manifest if e.part in VERSIONED_PARTS)
        raise ModelVersionConflictError(
            f"the renderer checkpoint is IMTalker {r} but the generator checkpoint is {g}; "
            "get both files from the same release (download the model again). Nothing was "
            "stored."
        )
    (new,) = set(known.values())
    if switching:
        return
    for entry in manifest:
        if entry.part not in VERSIONED_PARTS or entry.path in incoming:
            continue
        held = record.files.get(entry.path)
        if held is None or held.model_version is None or held.model_version == new:
            continue
        raise ModelVersionConflictError(
            f"the model store holds IMTalker {held.model_version} and "
            f"{', '.join(sorted(known))} {'is' if len(known) == 1 else 'are'} {new}. To switch "
            f"to {new}, import both renderer.ckpt and generator.ckpt with `imtalker-cam models "
            "import --replace FOLDER` (or run `imtalker-cam models remove` first). Nothing was "
            "stored."
        )
