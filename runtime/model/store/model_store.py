"""The model store: where the published IMTalker checkpoints live and how they are trusted.

Runs on whichever thread calls it (the CLI's main thread, or the GUI's worker thread); the
progress callback is called on that same thread. Processes share a store safely: every file is
checked before it is moved into place, and the store's folder is locked between processes
(`runtime.core.folder_lock`, no file of its own) while `store.json` is read, changed and
rewritten and for the whole of an import: no process's record update is lost, and imports take
turns. Temporary files a killed import left are removed, and their size reported, by the next
import or `status` (when no other process holds the lock).

Layout (exactly the published repository's, so a hand-made copy of it can be imported):

    <store>/renderer.ckpt
    <store>/generator.ckpt
    <store>/wav2vec2-base-960h/{config.json, pytorch_model.bin,
                                 preprocessor_config.json, feature_extractor_config.json}
    <store>/store.json        digests recorded when each file was first verified

Trust: a file is verified when its size and SHA-256 match the digests pinned in `MANIFEST`
(where known) and the digest recorded in `store.json` when the file was first verified
(trust on first use). Nothing is ever written at a final path: files are written to a temp
file in the same directory, flushed, fsync'ed, checked, then `os.replace`d into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from runtime.core import paths
from runtime.core.files import atomic_write_bytes, fsync_dir, glob_escape
from runtime.core.folder_lock import WINDOWS_LOCK_FILE, FolderLock
from runtime.core.leftovers import Removed, remove_abandoned
from runtime.core.units import human_bytes
from runtime.model.files import sha256_file, structure_problem
from runtime.model.store import importing as store_import
from runtime.model.store import versions as store_versions
from runtime.model.store.errors import Cancelled, ModelStoreError, VerificationError
from runtime.model.store.importing import deleted_copy
from runtime.model.store.locate import locate
from runtime.model.store.records import (
    MANIFEST,
    STORE_FILE,
    WAV2VEC_DIR,
    DamagedRecordError,
    ExpectedFile,
    FileRecord,
    FileStatus,
    ImportResult,
    RemoveResult,
    StoreRecord,
    StoreStatus,
    parse_record,
    utc_now,
)
from runtime.model.store.recovery import DAMAGED_PREFIX, rebuild_record
from runtime.model.transfer import ProgressCallback

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- locations


def changed_problem(relpath: str, recorded: FileRecord) -> str:
    """What to say of a file found changed since it was verified (same size and date)."""
    return (
        f"changed since it was verified on {recorded.first_verified} (same size and date, but "
        f"SHA-256 {recorded.changed_sha256} instead of {recorded.sha256}); restore the "
        "original: `imtalker-cam models download` fetches it again, or `imtalker-cam models "
        f"import` the original {PurePosixPath(relpath).name}"
    )


def default_store_dir() -> Path:
    """`<user data dir>/models`; `IMTALKER_DATA_DIR` replaces the user data dir."""
    return paths.model_store_dir()


class ModelStore:
    """The checkpoints of one model, laid out as the published repository lays them out."""

    def __init__(self, root: Path | None = None, *, manifest: Sequence[ExpectedFile] = MANIFEST):
        self.root = Path(root) if root is not None else default_store_dir()
        self.manifest: tuple[ExpectedFile, ...] = tuple(manifest)
        # Re-entrant: the record is read (and may be rebuilt) while the lock is held.
        self._lock = threading.RLock()
        self.notice: str | None = None
        self.leftovers_notice: str | None = None
        self._rebuilt: tuple[bytes, StoreRecord] | None = None
        self._folder_lock = FolderLock(self.root)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # ---- paths

    def check_root(self, *, writable: bool = True) -> None:
        """ValidationError when the store folder cannot be used (a file in its place, named
        with IMTALKER_DATA_DIR when that put it there) instead of NotADirectoryError later."""
        default = self.root == paths.model_store_dir()
        what = paths.label("model store", paths.DATA_ENV) if default else "model store"
        paths.check_root(self.root, what=what, writable=writable)

    def expected(self, relpath: str) -> ExpectedFile:
        for entry in self.manifest:
            if entry.path == relpath:
                return entry
        raise KeyError(f"{relpath!r} is not a file of the model")

    def path(self, relpath: str) -> Path:
        self.expected(relpath)
        return self.root.joinpath(*PurePosixPath(relpath).parts)

    def partial_path(self, relpath: str) -> Path:
        """Where a resumable download of `relpath` accumulates."""
        final = self.path(relpath)
        return final.with_name(f".{final.name}.incomplete")

    def partial_info_path(self, relpath: str) -> Path:
        final = self.path(relpath)
        return final.with_name(f".{final.name}.incomplete.json")

    @property
    def record_path(self) -> Path:
        return self.root / STORE_FILE

    # ---- record

    @contextlib.contextmanager
    def updating_record(self) -> Iterator[None]:
        """Held while `store.json` is read, changed and rewritten: this process's threads and
        other processes wait their turn, so no update is lost."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._folder_lock:
                yield

    def read_record(self) -> StoreRecord:
        """The record; a damaged one is set aside and rebuilt from the files present
        (`store_recovery`), and `notice` then tells the user so."""
        try:
            data = self.record_path.read_bytes()
        except FileNotFoundError:
            return StoreRecord()
        except OSError as exc:
            self.check_root(writable=False)  # a file in the folder's place: say which
            raise ModelStoreError(
                f"cannot read the model store's record {self.record_path}: {exc.strerror or exc}"
            ) from exc
        try:
            return parse_record(data)
        except DamagedRecordError as damage:
            with self._lock:
                if self._rebuilt is not None and self._rebuilt[0] == data:
                    return self._rebuilt[1]  # could not be replaced on disk: do not re-hash
                record, self.notice = rebuild_record(self, damage)
                self._rebuilt = (data, record)
                return record

    def _record_verified(
        self,
        relpath: str,
        *,
        sha256: str,
        size: int,
        source: str,
        model_version: str | None = None,
    ) -> None:
        """Record a file now verified at its final path (caller holds the lock); the date it
        was first verified survives re-verification of the same bytes."""
        record = self.read_record()
        previous = record.files.get(relpath)
        if previous is not None and previous.sha256 != sha256:
            previous = None  # a deliberate switch: a new first verification
        files = dict(record.files)
        files[relpath] = FileRecord(
            sha256=sha256,
            size=size,
            mtime_ns=self.path(relpath).stat().st_mtime_ns,
            first_verified=previous.first_verified if previous else utc_now(),
            source=source,
            model_version=model_version,
        )
        self.write_record(
            StoreRecord(repo_id=record.repo_id, revision=record.revision, files=files)
        )

    def write_record(self, record: StoreRecord) -> None:
        """Replace `store.json` with `record`, atomically (the caller holds what it read)."""
        data = json.dumps(record.to_json(), indent=2).encode() + b"\n"
        atomic_write_bytes(self.record_path, data)

    def set_origin(self, *, repo_id: str, revision: str) -> None:
        """Remember which commit the store came from, so later downloads stay on it."""
        record = self.read_record()
        if record.repo_id == repo_id and record.revision == revision:
            return
        self.check_root()
        with self.updating_record():
            record = self.read_record()
            if record.repo_id == repo_id and record.revision == revision:
                return
            self.write_record(
                StoreRecord(repo_id=repo_id, revision=revision, files=dict(record.files))
            )

    # ---- trust

    def pinned_sha256(self, relpath: str) -> str | None:
        """The digest a file must have: pinned in the manifest, else first verified."""
        entry = self.expected(relpath)
        if entry.sha256 is not None:
            return entry.sha256
        recorded = self.read_record().files.get(relpath)
        return recorded.sha256 if recorded is not None else None

    def candidate_problem(
        self, relpath: str, candidate: Path, *, sha256: str, size: int, switching: bool = False
    ) -> str:
        """Why `candidate` (with this digest and size) may not become `relpath`: its size or
        digest against the manifest and the first verification, or its structure; "" if it
        may. `switching`: another model version is being imported on purpose."""
        entry = self.expected(relpath)
        if entry.size is not None and size != entry.size:
            return f"size {size} bytes, expected {entry.size}"
        if entry.sha256 is not None and sha256 != entry.sha256:
            return f"SHA-256 {sha256}, expected the published {entry.sha256}"
        recorded = self.read_record().files.get(relpath)
        if recorded is not None and recorded.sha256 != sha256 and not switching:
            return (
                f"SHA-256 {sha256} differs from {recorded.sha256}, recorded when this file was "
                f"first verified on {recorded.first_verified}; to replace the model with a "
                "different version, import both checkpoints with `imtalker-cam models import "
                "--replace`, or run `imtalker-cam models remove` first"
            )
        problem = structure_problem(candidate, entry.kind)
        return problem or ""

    def install(
        self, relpath: str, candidate: Path, *, sha256: str, size: int, source: str
    ) -> None:
        """Check a fully written temp file (next to its final path) and move it into place.

        `sha256`/`size` are of `candidate`'s bytes, computed by the caller while writing. On a
        mismatch the candidate is deleted and `VerificationError` says why.
        """
        final = self.path(relpath)
        if candidate.parent != final.parent:
            raise ValueError("candidate must sit next to its final path for an atomic rename")
        try:
            problem = self.candidate_problem(relpath, candidate, sha256=sha256, size=size)
            if problem:
                raise VerificationError(f"{relpath}: {problem}. {deleted_copy(source)}")
            versions = self.inspect_versions({relpath: (candidate, sha256)})
            self.check_versions(versions, switching=False)
        except BaseException:
            with contextlib.suppress(OSError):
                candidate.unlink()
            raise
        self.place_verified(relpath, candidate, sha256=sha256, size=size, source=source,
                    model_version=versions.get(relpath))  # fmt: skip

    def place_verified(
        self,
        relpath: str,
        candidate: Path,
        *,
        sha256: str,
        size: int,
        source: str,
        model_version: str | None,
    ) -> None:
        """Move a checked candidate into place and record it verified (the checks are the
        caller's: `candidate_problem`, `inspect_versions`, `check_versions`)."""
        final = self.path(relpath)
        with self.updating_record():
            if candidate != final:
                os.replace(candidate, final)
                fsync_dir(final.parent)
            self._record_verified(
                relpath, sha256=sha256, size=size, source=source, model_version=model_version
            )
        logger.info("verified and stored %s (sha256 %s)", relpath, sha256)

    # ---- model version (the checks live in runtime.model.store.versions)

    def model_version(self) -> str | None:
        """The IMTalker version ("v1", "v2") of the verified renderer and generator as
        recorded, None while either is missing or unknown."""
        return store_versions.recorded_version(self.read_record(), self.manifest)

    def inspect_versions(self, candidates: dict[str, tuple[Path, str]]) -> dict[str, str | None]:
        """The model version each candidate checkpoint is, by its keys (None: not one)."""
        return store_versions.inspect_candidates(self.manifest, candidates)

    def check_versions(self, incoming: dict[str, str | None], *, switching: bool) -> None:
        """Refuse (`ModelStoreError`) a set that would leave the store mixed or of another
        version than it holds, unless `switching`."""
        store_versions.check_versions(
            self.manifest, self.read_record(), incoming, switching=switching
        )

    # ---- status

    def status(self, *, deep: bool = False, cancel: threading.Event | None = None) -> StoreStatus:
        """What is present and verified. `deep` re-hashes every file instead of trusting
        an unchanged size and modification time since it was last verified."""
        self.check_root(writable=False)
        self.remove_leftovers()
        record = self.read_record()
        out: list[FileStatus] = []
        refreshed: dict[str, FileRecord] = {}
        for entry in self.manifest:
            final = self.path(entry.path)
            recorded = record.files.get(entry.path)
            try:
                st = final.stat()
            except FileNotFoundError:
                out.append(FileStatus(entry.path, False, False, None, None, "missing"))
                continue
            digest = recorded.sha256 if recorded is not None else None
            problem = None
            if recorded is None:
                problem = "not verified (not downloaded or imported by imtalker-cam)"
            elif entry.sha256 is not None and recorded.sha256 != entry.sha256:
                problem = "does not match the published digest"
            elif entry.size is not None and st.st_size != entry.size:
                problem = "does not match the published size"
            elif st.st_size != recorded.size:
                problem = "changed since it was verified (size differs)"
            elif deep:
                actual = sha256_file(final, cancel=cancel)
                if actual != recorded.sha256:
                    problem = "changed since it was verified (SHA-256 differs)"
                elif st.st_mtime_ns != recorded.mtime_ns or recorded.changed_sha256:
                    refreshed[entry.path] = dataclasses.replace(
                        recorded, mtime_ns=st.st_mtime_ns, changed_sha256=None
                    )
            elif recorded.changed_sha256 is not None:
                problem = changed_problem(entry.path, recorded)
            elif st.st_mtime_ns != recorded.mtime_ns:
                problem = "modified since it was verified (run `models status --deep`)"
            out.append(FileStatus(entry.path, True, problem is None, st.st_size, digest, problem))
        if refreshed:
            with self.updating_record():
                current = self.read_record()
                files = {**current.files, **refreshed}
                self.write_record(
                    StoreRecord(repo_id=current.repo_id, revision=current.revision, files=files)
                )
        return StoreStatus(
            root=self.root,
            repo_id=record.repo_id,
            revision=record.revision,
            files=tuple(out),
            notice=" ".join(n for n in (self.notice, self.leftovers_notice) if n) or None,
        )

    def found_changed(self, relpath: str, digest: str) -> str | None:
        """A reader (the conversion) found `relpath` with `digest`, not the recorded one: when
        the file now has another digest than the one recorded, remember it (status says so
        until it is restored) and return what to tell the user; None when it matches again."""
        try:
            final = self.path(relpath)
            actual = sha256_file(final)
        except (KeyError, OSError):  # a file the loader prefers, not the store's own
            return None
        with self.updating_record():
            record = self.read_record()
            recorded = record.files.get(relpath)
            if recorded is None or actual == recorded.sha256:
                return None
            changed = dataclasses.replace(recorded, changed_sha256=actual)
            self.write_record(
                StoreRecord(
                    repo_id=record.repo_id,
                    revision=record.revision,
                    files={**record.files, relpath: changed},
                )
            )
        logger.warning("%s in the model store: %s", relpath, changed_problem(relpath, changed))
        return f"{final} {changed_problem(relpath, changed)}"

    def file_status(self, relpath: str) -> FileStatus:
        for status in self.status().files:
            if status.path == relpath:
                return status
        raise KeyError(relpath)

    def verified_digests(self) -> dict[str, str] | None:
        """SHA-256 of every file when all are present and verified, else None."""
        status = self.status()
        if not status.complete:
            return None
        return {f.path: f.sha256 for f in status.files if f.sha256 is not None}

    # ---- import

    def locate(self, sources: Sequence[Path]) -> dict[str, Path]:
        """Map expected files to the user's files (`store_locate.locate`)."""
        return locate(self.manifest, sources)

    def import_files(
        self,
        sources: Sequence[Path],
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        replace: bool = False,
    ) -> ImportResult:
        """Copy the user's files into the store (never moving them), verifying each
        (`store_import`).

        Every file is copied and checked (digest, format, and for checkpoints the inspector's
        structural checks and model version) before any is put in place: when one fails,
        nothing in the store changes. `replace` allows a deliberate switch to another model
        version: a renderer and generator of one version replace those of another (their
        recorded digests start over); without it such an import is refused.
        """
        with self._importing(cancel):
            self._remove_leftovers()
            return store_import.import_files(
                self, sources, progress=progress, cancel=cancel, replace=replace
            )

    @contextlib.contextmanager
    def _importing(self, cancel: threading.Event | None) -> Iterator[None]:
        """One import at a time per store, across processes (the others wait, cancellable)."""
        self.check_root()
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._folder_lock.acquire(blocking=False):
            logger.info("waiting for another process using %s to finish", self.root)
            if not self._folder_lock.acquire(cancelled=cancel):
                raise Cancelled("import cancelled")
        try:
            yield
        finally:
            self._folder_lock.release()

    # ---- leftovers of killed processes

    def _temp_files(self) -> list[Path]:
        found: list[Path] = []
        for entry in self.manifest:
            final = self.path(entry.path)
            if final.parent.is_dir():
                found.extend(final.parent.glob(f".{glob_escape(final.name)}.*.tmp"))
        if self.root.is_dir():
            found.extend(self.root.glob(f".{STORE_FILE}.*.tmp"))
        return [p for p in found if p.is_file() and not p.is_symlink()]

    def remove_leftovers(self) -> Removed:
        """Delete the temporary files a killed import (or record write) left, when no import
        is running; `leftovers_notice` then says how much was freed."""
        if not self.root.is_dir() or not self._temp_files():
            return Removed()
        if self._folder_lock.held:
            return Removed()  # this store is importing: the files are its own
        try:
            if not self._folder_lock.acquire(blocking=False):
                return Removed()  # another process imports: its temporary files are its own
        except OSError:
            return Removed()
        try:
            return self._remove_leftovers()
        finally:
            self._folder_lock.release()

    def _remove_leftovers(self) -> Removed:
        """(Holding the import lock.)"""
        with self.updating_record():
            removed = remove_abandoned(self._temp_files())
        if removed.paths:
            self.leftovers_notice = (
                f"Removed {len(removed.paths)} temporary file(s) ({human_bytes(removed.size)}) "
                "that an interrupted import left in the store."
            )
            logger.warning("%s", self.leftovers_notice)
        return removed

    # ---- remove

    def _still_recorded(self, relpath: str, record: StoreRecord) -> bool:
        """Whether the file at `relpath` is the one the store recorded (same size and mtime,
        or, when only the mtime moved, the same SHA-256): only that one is the store's."""
        recorded = record.files.get(relpath)
        final = self.path(relpath)
        if recorded is None or final.is_symlink() or not final.is_file():
            return False
        st = final.stat()
        if st.st_size != recorded.size:
            return False
        return st.st_mtime_ns == recorded.mtime_ns or sha256_file(final) == recorded.sha256

    def own_files(self) -> list[Path]:
        """Every file of the store that exists: the checkpoints it recorded (and that are
        still what it recorded), partial downloads, temp files and the record. Nothing else in
        the directory is the store's, not even a file named like a checkpoint."""
        record = self.read_record()
        own: list[Path] = []
        for entry in self.manifest:
            final = self.path(entry.path)
            if self._still_recorded(entry.path, record):
                own.append(final)
            own.append(self.partial_path(entry.path))
            own.append(self.partial_info_path(entry.path))
            if final.parent.is_dir():
                own.extend(final.parent.glob(f".{glob_escape(final.name)}.*.tmp"))
        own.append(self.record_path)
        if self.root.is_dir():
            own.extend(self.root.glob(f".{STORE_FILE}.*.tmp"))
            own.extend(self.root.glob(f"{glob_escape(DAMAGED_PREFIX)}*"))
        return [p for p in own if p.is_file() or p.is_symlink()]

    def remove(self) -> RemoveResult:
        removed: list[Path] = []
        with self._lock:
            own = self.own_files()
            not_recorded = tuple(
                p
                for e in self.manifest
                if (p := self.path(e.path)) not in own and (p.is_file() or p.is_symlink())
            )
            for path in own:
                path.unlink()
                removed.append(path)
            self.notice = None
            self._rebuilt = None
            if sys.platform == "win32":  # the folder lock's stand-in file
                with contextlib.suppress(OSError):
                    (self.root / WINDOWS_LOCK_FILE).unlink()
        kept: list[Path] = []
        for folder in (self.root / WAV2VEC_DIR, self.root):
            if not folder.is_dir():
                continue
            try:
                folder.rmdir()
            except OSError:
                kept.extend(p for p in folder.iterdir() if p.is_file())
        return RemoveResult(tuple(removed), tuple(kept), not_recorded)
