"""Rebuilding a damaged `store.json` from the files present (caller's thread, holding the
store's lock; re-hashing takes seconds per GB).

A record that cannot be read as a whole (not UTF-8, not JSON, nested too deeply, wrong
types) is never silently ignored, which would make every verified file look unverified: it is
renamed aside (`store.json.damaged-<time>`, kept for inspection) and a new one is written for
the files that can be re-verified now: each present file is re-hashed and structure-checked,
and must match a digest pinned in the manifest and any entry of the damaged record that could
still be read. A checkpoint the damaged record no longer vouches for is trusted anew only as on
import: after the checkpoint inspector passes it (safe unpickler, keys and shapes of a known
model version). A file that fails stays unverified and the notice says so.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from runtime.core.damaged import set_aside
from runtime.model import inspection
from runtime.model.files import sha256_file, structure_problem
from runtime.model.store.access import StoreAccess
from runtime.model.store.records import (
    STORE_FILE,
    DamagedRecordError,
    FileRecord,
    StoreRecord,
    utc_now,
)

logger = logging.getLogger(__name__)

DAMAGED_PREFIX = f"{STORE_FILE}.damaged-"
REVERIFIED_SOURCE = "re-verified after store.json was damaged"


def rebuild_record(store: StoreAccess, damage: DamagedRecordError) -> tuple[StoreRecord, str]:
    """Set the damaged record aside, write one re-verified from the files present, and
    return it with a notice for the user."""
    salvaged = damage.salvaged or StoreRecord()
    aside = set_aside(store.record_path, lambda stamp: DAMAGED_PREFIX + stamp)
    files: dict[str, FileRecord] = {}
    failed: list[str] = []
    unvouched: dict[str, str] = {}  # part -> relpath of checkpoints trusted anew
    for entry in store.manifest:
        path = store.path(entry.path)
        try:
            if not path.is_file():
                continue
            st = path.stat()
            sha = sha256_file(path)
        except OSError as exc:
            failed.append(f"{entry.path} (unreadable: {exc.strerror or exc})")
            continue
        earlier = salvaged.files.get(entry.path)
        problem = None
        if entry.sha256 is not None and sha != entry.sha256:
            problem = "differs from the published digest"
        elif earlier is not None and earlier.sha256 != sha:
            problem = "differs from the digest recorded when it was first verified"
        else:
            problem = structure_problem(path, entry.kind)
        if problem:
            failed.append(f"{entry.path} ({problem})")
            continue
        files[entry.path] = FileRecord(
            sha256=sha,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            first_verified=earlier.first_verified if earlier else utc_now(),
            source=earlier.source if earlier else REVERIFIED_SOURCE,
            model_version=earlier.model_version if earlier else None,
        )
        if earlier is None and entry.part is not None:
            unvouched[entry.part] = entry.path
    for rel, reason in _inspect_unvouched(store, files, unvouched).items():
        del files[rel]
        failed.append(f"{rel} ({reason})")
    record = StoreRecord(repo_id=salvaged.repo_id, revision=salvaged.revision, files=files)
    with contextlib.suppress(OSError):
        store.write_record(record)
    kept = f" (the damaged file was kept as {aside.name})" if aside is not None else ""
    notice = (
        f"The model store's record {store.record_path} was damaged: {damage.reason}{kept}. "
        f"It was rebuilt from the files present: {len(files)} file(s) re-verified by SHA-256"
    )
    if failed:
        notice += "; not verified: " + ", ".join(failed)
    notice += "."
    logger.warning("%s", notice)
    return record, notice


def _inspect_unvouched(
    store: StoreAccess, files: dict[str, FileRecord], unvouched: dict[str, str]
) -> dict[str, str]:
    """Run the checkpoint inspector on the checkpoints about to be trusted anew; record the
    model version of those that pass and return relpath -> reason for those that fail."""
    if not unvouched:
        return {}
    if not inspection.inspector_available():
        logger.warning(
            "the checkpoint inspector is not installed: %s re-verified after the format check only",
            ", ".join(unvouched.values()),
        )
        return {}
    try:
        verdicts = inspection.inspect_files(
            {part: store.path(rel) for part, rel in unvouched.items()},
            digests={part: files[rel].sha256 for part, rel in unvouched.items()},
        )
    except inspection.InspectionError as exc:
        return {rel: f"could not be inspected: {exc}" for rel in unvouched.values()}
    refused: dict[str, str] = {}
    for part, verdict in verdicts.items():
        rel = unvouched[part]
        if verdict.ok:
            files[rel] = replace(files[rel], model_version=verdict.model_version)
        else:
            refused[rel] = verdict.problem or "failed the checkpoint inspection"
    return refused
