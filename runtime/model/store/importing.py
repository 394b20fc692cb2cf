"""Importing the user's files into the model store: copy while hashing (or verify in place),
then check the whole batch before any file is placed (runs on the caller's thread; the
progress callback is called on it too).

Every file is copied to a temp file next to its final path and checked (digest, format, and for
checkpoints the inspector's structural checks and model version) before any is put in place:
when one fails, nothing in the store changes and every copy made is deleted. The user's own
files are only ever read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from runtime.core.files import is_disk_full, temp_path, write_all
from runtime.core.units import human_bytes
from runtime.model.files import HASH_CHUNK, sha256_file
from runtime.model.store import versions as store_versions
from runtime.model.store.access import StoreAccess
from runtime.model.store.errors import (
    Cancelled,
    DiskFullError,
    ModelStoreError,
    VerificationError,
)
from runtime.model.store.records import ImportResult
from runtime.model.transfer import ProgressCallback, ProgressReporter

# relpath -> (file, sha256, size, source)
_Staged = dict[str, tuple[Path, str, int, str]]


def deleted_copy(source: str) -> str:
    """What happened to a refused file, for the error message: never let "deleted" read as
    the user's file when only the store's copy of it went."""
    if source.startswith("import "):
        return f"The copy made in the store was deleted; your file {source[7:]} was not touched."
    return "The downloaded file was deleted."


def import_files(
    store: StoreAccess,
    sources: Sequence[Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    replace: bool = False,
) -> ImportResult:
    """`ModelStore.import_files`: copy, check the batch, then place every file."""
    store.check_root()
    located = store.locate(sources)
    if not located:
        raise ModelStoreError(
            "none of the model's files were found in "
            + ", ".join(str(s) for s in sources)
            + "; expected: "
            + ", ".join(e.path for e in store.manifest)
        )
    order = [e.path for e in store.manifest if e.path in located]
    sizes = {rel: located[rel].stat().st_size for rel in order}
    reporter = ProgressReporter(progress, total=sum(sizes.values()), file_count=len(order))
    staged: _Staged = {}
    in_place: set[str] = set()
    unchanged: list[str] = []
    try:
        for index, relpath in enumerate(order):
            source = located[relpath]
            final = store.path(relpath)
            if final.exists() and final.samefile(source):
                # Importing the store's own file: verify it where it is, never delete it.
                sha, size = _hash_in_place(store, relpath, reporter, index, cancel)
                staged[relpath] = (final, sha, size, "import (in place)")
                in_place.add(relpath)
                continue
            store.root.mkdir(parents=True, exist_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(final, "import")
            try:
                sha, size = _copy_hashing(store.root, source, tmp, relpath, index, reporter, cancel)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            current = store.file_status(relpath)
            if current.verified and current.sha256 == sha:
                tmp.unlink()
                unchanged.append(relpath)
                continue
            staged[relpath] = (tmp, sha, size, f"import {source}")
        versions = _check_staged(store, staged, switching=replace)
    except BaseException:
        for relpath, (file, *_rest) in staged.items():
            if relpath not in in_place:
                with contextlib.suppress(OSError):
                    file.unlink()
        raise
    for relpath, (file, sha, size, origin) in staged.items():
        store.place_verified(relpath, file, sha256=sha, size=size, source=origin,
                     model_version=versions.get(relpath))  # fmt: skip
    missing = tuple(e.path for e in store.manifest if e.path not in located)
    return ImportResult(tuple(staged), tuple(unchanged), missing)


def _check_staged(store: StoreAccess, staged: _Staged, *, switching: bool) -> dict[str, str | None]:
    """Every check of a batch of files before any is placed; returns the model versions.
    A switch needs both versioned checkpoints in the batch and a version that differs."""
    versions = store.inspect_versions({rel: (f, sha) for rel, (f, sha, _, _) in staged.items()})
    if switching:
        store_versions.check_switch(store.manifest, versions, held=store.model_version())
    store.check_versions(versions, switching=switching)
    # After the version checks, so that another version is named as such.
    for relpath, (file, sha, size, origin) in staged.items():
        # A switch replaces the versioned checkpoints only; other files keep their digests.
        replaced = switching and relpath in versions
        problem = store.candidate_problem(relpath, file, sha256=sha, size=size,
                                           switching=replaced)  # fmt: skip
        if problem:
            done = (
                "Your file was not changed."
                if file == store.path(relpath)
                else deleted_copy(origin)
            )
            raise VerificationError(f"{relpath}: {problem}. Nothing was stored. {done}")
    return versions


def _hash_in_place(
    store: StoreAccess,
    relpath: str,
    reporter: ProgressReporter,
    index: int,
    cancel: threading.Event | None,
) -> tuple[str, int]:
    final = store.path(relpath)
    size = final.stat().st_size
    sha = sha256_file(final, cancel=cancel)
    reporter.done += size
    reporter.report(
        phase="verify",
        path=relpath,
        file_index=index,
        file_done=size,
        file_total=size,
        force=True,
    )
    return sha, size


def _copy_hashing(
    root: Path,
    source: Path,
    tmp: Path,
    relpath: str,
    index: int,
    reporter: ProgressReporter,
    cancel: threading.Event | None,
) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    total = source.stat().st_size
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(HASH_CHUNK):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("import cancelled")
                write_all(dst, chunk)
                h.update(chunk)
                size += len(chunk)
                reporter.done += len(chunk)
                reporter.report(
                    phase="copy",
                    path=relpath,
                    file_index=index,
                    file_done=size,
                    file_total=total,
                )
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(
                f"not enough disk space in {root} to import {relpath} "
                f"({human_bytes(total)}); the store was left as it was"
            ) from exc
        raise ModelStoreError(f"could not copy {source}: {exc}") from exc
    reporter.report(
        phase="copy",
        path=relpath,
        file_index=index,
        file_done=size,
        file_total=total,
        force=True,
    )
    return h.hexdigest(), size
