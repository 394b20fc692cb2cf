"""The model store: where the published IMTalker checkpoints live and how they are trusted.

Runs on whichever thread calls it (the CLI's main thread, or the GUI's worker thread); the
progress callback is called on that same thread. One store is used by one process at a time;
a concurrent writer cannot corrupt it (every file is checked before it is moved into place),
it can only waste work.

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
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from runtime import paths

logger = logging.getLogger(__name__)

APP_NAME = paths.APP_NAME

REPO_ID = "cbsjtu01/IMTalker"
"""The model repository on the Hugging Face Hub that publishes the checkpoints."""

STORE_FILE = "store.json"
STORE_FORMAT = 1
WAV2VEC_DIR = "wav2vec2-base-960h"

_HASH_CHUNK = 8 << 20
_ENOSPC = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclass(frozen=True)
class ExpectedFile:
    """One file of the published repository. `size`/`sha256` are pinned where known."""

    path: str  # POSIX path relative to the repository root
    kind: Literal["checkpoint", "json"]
    description: str
    size: int | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


# No digest is pinned yet: the published repository lists none and this project has not
# downloaded it through a trusted channel. Until then the hub's own content hash (the LFS
# ETag, checked on every download) and the digest recorded at first verification in
# `store.json` are what a file is checked against. Pin sizes and digests here once known.
MANIFEST: tuple[ExpectedFile, ...] = (
    ExpectedFile("renderer.ckpt", "checkpoint", "renderer"),
    ExpectedFile("generator.ckpt", "checkpoint", "motion generator (flow matching)"),
    ExpectedFile(f"{WAV2VEC_DIR}/config.json", "json", "wav2vec2 configuration"),
    ExpectedFile(f"{WAV2VEC_DIR}/pytorch_model.bin", "checkpoint", "wav2vec2 audio encoder"),
    ExpectedFile(f"{WAV2VEC_DIR}/preprocessor_config.json", "json", "wav2vec2 preprocessor"),
    ExpectedFile(
        f"{WAV2VEC_DIR}/feature_extractor_config.json", "json", "wav2vec2 feature extractor"
    ),
)


# --------------------------------------------------------------------------- errors


class ModelStoreError(Exception):
    """A failure with a message meant for the user (no traceback needed)."""


class VerificationError(ModelStoreError):
    """A file did not match what it must be; the offending copy has been deleted."""


class DiskFullError(ModelStoreError):
    """Not enough space; nothing at a final path was touched."""


class Cancelled(ModelStoreError):
    """The user cancelled; partial downloads are kept so the next attempt resumes."""


# --------------------------------------------------------------------------- locations


def default_store_dir() -> Path:
    """`<user data dir>/models`; `IMTALKER_DATA_DIR` replaces the user data dir."""
    return paths.model_store_dir()


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class TransferProgress:
    """Where a download or import stands. Sizes in bytes; `speed` in bytes/s."""

    phase: Literal["download", "copy", "verify"]
    path: str
    file_index: int
    file_count: int
    file_done: int
    file_total: int | None
    done: int
    total: int | None
    speed: float | None
    eta: float | None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[TransferProgress], None]


class RateMeter:
    """Transfer speed over a sliding window, so a stall shows up within seconds."""

    def __init__(self, *, window: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._window = window
        self._clock = clock
        self._samples: list[tuple[float, int]] = []

    def update(self, done: int) -> float | None:
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.pop(0)
        t0, d0 = self._samples[0]
        if now - t0 < 0.2:
            return None
        return max(0.0, (done - d0) / (now - t0))


@dataclass
class ProgressReporter:
    """Throttles progress callbacks and fills in speed and ETA (not thread-safe)."""

    callback: ProgressCallback | None
    total: int | None
    file_count: int
    interval: float = 0.1
    done: int = 0
    _meter: RateMeter = field(default_factory=RateMeter)
    _last: float = -1.0

    def report(
        self,
        *,
        phase: Literal["download", "copy", "verify"],
        path: str,
        file_index: int,
        file_done: int,
        file_total: int | None,
        force: bool = False,
    ) -> None:
        speed = self._meter.update(self.done)
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        eta = None
        if speed and self.total is not None:
            eta = max(0.0, self.total - self.done) / speed
        self.callback(
            TransferProgress(
                phase=phase,
                path=path,
                file_index=file_index,
                file_count=self.file_count,
                file_done=file_done,
                file_total=file_total,
                done=self.done,
                total=self.total,
                speed=speed,
                eta=eta,
            )
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_progress(p: TransferProgress) -> str:
    """One line for a terminal: file, bytes, percentage, speed and time left."""
    total = human_bytes(p.total) if p.total is not None else "?"
    parts = [f"[{p.file_index + 1}/{p.file_count}] {p.path}", f"{human_bytes(p.done)} / {total}"]
    if p.fraction is not None:
        parts.append(f"{100 * p.fraction:.0f}%")
    if p.speed:
        parts.append(f"{human_bytes(p.speed)}/s")
    if p.eta is not None:
        parts.append(f"{human_duration(p.eta)} left")
    return "  ".join(parts)


# --------------------------------------------------------------------------- file helpers


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in _ENOSPC


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX; Windows has no directory fsync)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(final: Path, tag: str) -> Path:
    """A unique hidden temp name next to `final`, so the rename into place is atomic."""
    return final.with_name(f".{final.name}.{tag}{secrets.token_hex(4)}.tmp")


def atomic_write_bytes(final: Path, data: bytes) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final, "")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def sha256_file(
    path: Path,
    *,
    cancel: threading.Event | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            h.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return h.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: what the hub reports as ETag for non-LFS files."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def structure_problem(path: Path, kind: Literal["checkpoint", "json"]) -> str | None:
    """A cheap format check that catches truncated files and saved HTML error pages."""
    try:
        if kind == "json":
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return f"not a JSON file ({exc})"
            return None if isinstance(value, dict) else "not a JSON object"
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
            except (zipfile.BadZipFile, OSError) as exc:
                return f"damaged PyTorch archive ({exc})"
            if not any(n.endswith("data.pkl") for n in names):
                return "a zip archive but not a PyTorch checkpoint"
            return None
        # torch.save's legacy format starts with a protocol-2 pickle.
        if head[:1] == b"\x80":
            return None
        return "not a PyTorch checkpoint"
    except OSError as exc:
        return f"unreadable ({exc})"


# --------------------------------------------------------------------------- the record


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    size: int
    mtime_ns: int
    first_verified: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "first_verified": self.first_verified,
            "source": self.source,
        }

    @staticmethod
    def from_json(raw: Any) -> FileRecord:
        return FileRecord(
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            mtime_ns=int(raw["mtime_ns"]),
            first_verified=str(raw["first_verified"]),
            source=str(raw.get("source", "")),
        )


@dataclass(frozen=True)
class StoreRecord:
    """The contents of `store.json`."""

    repo_id: str | None = None
    revision: str | None = None  # commit the store was first downloaded from
    files: dict[str, FileRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "files": {k: v.to_json() for k, v in sorted(self.files.items())},
        }


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class FileStatus:
    path: str
    present: bool
    verified: bool
    size: int | None
    sha256: str | None  # the recorded (first-verified) digest
    problem: str | None  # why it is not verified, for humans


@dataclass(frozen=True)
class StoreStatus:
    root: Path
    repo_id: str | None
    revision: str | None
    files: tuple[FileStatus, ...]

    @property
    def complete(self) -> bool:
        return all(f.verified for f in self.files)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files if not f.verified)


@dataclass(frozen=True)
class ImportResult:
    imported: tuple[str, ...]
    unchanged: tuple[str, ...]  # already in the store with the same digest
    missing: tuple[str, ...]  # expected files not found among the sources


@dataclass(frozen=True)
class RemoveResult:
    removed: tuple[Path, ...]
    kept: tuple[Path, ...]  # files in the store directory that are not the store's


# --------------------------------------------------------------------------- the store


class ModelStore:
    """The checkpoints of one model, laid out as the published repository lays them out."""

    def __init__(self, root: Path | None = None, *, manifest: Sequence[ExpectedFile] = MANIFEST):
        self.root = Path(root) if root is not None else default_store_dir()
        self.manifest: tuple[ExpectedFile, ...] = tuple(manifest)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # ---- paths

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

    def read_record(self) -> StoreRecord:
        try:
            raw = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return StoreRecord()
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable %s: %s", self.record_path, exc)
            return StoreRecord()
        files: dict[str, FileRecord] = {}
        for name, entry in dict(raw.get("files") or {}).items():
            try:
                files[str(name)] = FileRecord.from_json(entry)
            except (KeyError, TypeError, ValueError):
                logger.warning("ignoring a damaged entry for %s in %s", name, self.record_path)
        return StoreRecord(
            repo_id=raw.get("repo_id"),
            revision=raw.get("revision"),
            files=files,
        )

    def _record_verified(self, relpath: str, *, sha256: str, size: int, source: str) -> None:
        """Record a file now verified at its final path (caller holds the lock); the date it
        was first verified survives re-verification."""
        record = self.read_record()
        previous = record.files.get(relpath)
        files = dict(record.files)
        files[relpath] = FileRecord(
            sha256=sha256,
            size=size,
            mtime_ns=self.path(relpath).stat().st_mtime_ns,
            first_verified=previous.first_verified if previous else _utc_now(),
            source=source,
        )
        self._write_record(
            StoreRecord(repo_id=record.repo_id, revision=record.revision, files=files)
        )

    def _write_record(self, record: StoreRecord) -> None:
        data = json.dumps(record.to_json(), indent=2).encode() + b"\n"
        atomic_write_bytes(self.record_path, data)

    def set_origin(self, *, repo_id: str, revision: str) -> None:
        """Remember which commit the store came from, so later downloads stay on it."""
        with self._lock:
            record = self.read_record()
            if record.repo_id == repo_id and record.revision == revision:
                return
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_record(
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

    def _candidate_problem(self, relpath: str, candidate: Path, *, sha256: str, size: int) -> str:
        entry = self.expected(relpath)
        if entry.size is not None and size != entry.size:
            return f"size {size} bytes, expected {entry.size}"
        if entry.sha256 is not None and sha256 != entry.sha256:
            return f"SHA-256 {sha256}, expected the published {entry.sha256}"
        recorded = self.read_record().files.get(relpath)
        if recorded is not None and recorded.sha256 != sha256:
            return (
                f"SHA-256 {sha256} differs from {recorded.sha256}, recorded when this file was "
                f"first verified on {recorded.first_verified}; to replace the model with a "
                "different version, run `imtalker-cam models remove` first"
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
        problem = self._candidate_problem(relpath, candidate, sha256=sha256, size=size)
        if problem:
            with contextlib.suppress(OSError):
                candidate.unlink()
            raise VerificationError(f"{relpath}: {problem}. The file was deleted.")
        with self._lock:
            os.replace(candidate, final)
            fsync_dir(final.parent)
            self._record_verified(relpath, sha256=sha256, size=size, source=source)
        logger.info("verified and stored %s (sha256 %s)", relpath, sha256)

    # ---- status

    def status(self, *, deep: bool = False, cancel: threading.Event | None = None) -> StoreStatus:
        """What is present and verified. `deep` re-hashes every file instead of trusting
        an unchanged size and modification time since it was last verified."""
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
                elif st.st_mtime_ns != recorded.mtime_ns:
                    refreshed[entry.path] = FileRecord(
                        sha256=recorded.sha256,
                        size=recorded.size,
                        mtime_ns=st.st_mtime_ns,
                        first_verified=recorded.first_verified,
                        source=recorded.source,
                    )
            elif st.st_mtime_ns != recorded.mtime_ns:
                problem = "modified since it was verified (run `models status --deep`)"
            out.append(FileStatus(entry.path, True, problem is None, st.st_size, digest, problem))
        if refreshed:
            with self._lock:
                current = self.read_record()
                files = {**current.files, **refreshed}
                self._write_record(
                    StoreRecord(repo_id=current.repo_id, revision=current.revision, files=files)
                )
        return StoreStatus(
            root=self.root, repo_id=record.repo_id, revision=record.revision, files=tuple(out)
        )

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
        """Map expected files to the user's files: folders laid out like the repository (or
        holding it up to three levels down, as a Hugging Face cache does, or the wav2vec2
        folder itself), or single files named as in the repository."""
        found: dict[str, Path] = {}
        by_name = {e.name: e.path for e in self.manifest}
        for source in sources:
            source = Path(source)
            if source.is_file():
                relpath = by_name.get(source.name)
                if relpath is None:
                    expected = ", ".join(sorted(by_name))
                    raise ModelStoreError(
                        f"{source}: not a file of the model (expected one of: {expected})"
                    )
                found.setdefault(relpath, source)
            elif source.is_dir():
                for relpath, path in self._locate_in(source).items():
                    found.setdefault(relpath, path)
            else:
                raise ModelStoreError(f"{source}: no such file or folder")
        return found

    def _locate_in(self, folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for entry in self.manifest:
            parts = PurePosixPath(entry.path).parts
            candidates = [folder.joinpath(*parts)]
            if len(parts) > 1 and folder.name == parts[0]:
                candidates.append(folder.joinpath(*parts[1:]))
            hits = [c for c in candidates if c.is_file()]
            if not hits:
                pattern = "/".join(parts)
                hits = sorted(
                    p
                    for depth in ("*/", "*/*/", "*/*/*/")
                    for p in folder.glob(depth + pattern)
                    if p.is_file() and not any(q.startswith(".") for q in p.parts[-len(parts) :])
                )
            if len(hits) > 1:
                listed = ", ".join(str(h) for h in hits)
                raise ModelStoreError(f"{entry.path}: found more than one copy ({listed})")
            if hits:
                found[entry.path] = hits[0]
        return found

    def import_files(
        self,
        sources: Sequence[Path],
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImportResult:
        """Copy the user's files into the store (never moving them), verifying each."""
        located = self.locate(sources)
        if not located:
            raise ModelStoreError(
                "none of the model's files were found in "
                + ", ".join(str(s) for s in sources)
                + "; expected: "
                + ", ".join(e.path for e in self.manifest)
            )
        order = [e.path for e in self.manifest if e.path in located]
        sizes = {rel: located[rel].stat().st_size for rel in order}
        reporter = ProgressReporter(progress, total=sum(sizes.values()), file_count=len(order))
        imported: list[str] = []
        unchanged: list[str] = []
        for index, relpath in enumerate(order):
            source = located[relpath]
            final = self.path(relpath)
            if final.exists() and final.samefile(source):
                # Importing the store's own file: verify it where it is.
                self._adopt_in_place(relpath, reporter, index, cancel)
                imported.append(relpath)
                continue
            self.root.mkdir(parents=True, exist_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(final, "import")
            try:
                sha, size = self._copy_hashing(source, tmp, relpath, index, reporter, cancel)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            current = self.file_status(relpath)
            if current.verified and current.sha256 == sha:
                tmp.unlink()
                unchanged.append(relpath)
                continue
            self.install(relpath, tmp, sha256=sha, size=size, source=f"import {source}")
            imported.append(relpath)
        missing = tuple(e.path for e in self.manifest if e.path not in located)
        return ImportResult(tuple(imported), tuple(unchanged), missing)

    def _copy_hashing(
        self,
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
                while chunk := src.read(_HASH_CHUNK):
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
                    f"not enough disk space in {self.root} to import {relpath} "
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

    def _adopt_in_place(
        self,
        relpath: str,
        reporter: ProgressReporter,
        index: int,
        cancel: threading.Event | None,
    ) -> None:
        final = self.path(relpath)
        size = final.stat().st_size
        sha = sha256_file(final, cancel=cancel)
        problem = self._candidate_problem(relpath, final, sha256=sha, size=size)
        if problem:
            # The user's own file (it is at the store's path): say so, never delete it.
            raise VerificationError(f"{relpath}: {problem}")
        with self._lock:
            self._record_verified(relpath, sha256=sha, size=size, source="import (in place)")
        reporter.done += size
        reporter.report(
            phase="verify",
            path=relpath,
            file_index=index,
            file_done=size,
            file_total=size,
            force=True,
        )

    # ---- remove

    def own_files(self) -> list[Path]:
        """Every file of the store that exists: checkpoints, partial downloads, temp files
        and the record. Nothing else in the directory is the store's."""
        own: list[Path] = []
        for entry in self.manifest:
            final = self.path(entry.path)
            own.append(final)
            own.append(self.partial_path(entry.path))
            own.append(self.partial_info_path(entry.path))
            if final.parent.is_dir():
                own.extend(final.parent.glob(f".{glob_escape(final.name)}.*.tmp"))
        own.append(self.record_path)
        if self.root.is_dir():
            own.extend(self.root.glob(f".{STORE_FILE}.*.tmp"))
        return [p for p in own if p.is_file() or p.is_symlink()]

    def remove(self) -> RemoveResult:
        removed: list[Path] = []
        with self._lock:
            for path in self.own_files():
                path.unlink()
                removed.append(path)
        kept: list[Path] = []
        for folder in (self.root / WAV2VEC_DIR, self.root):
            if not folder.is_dir():
                continue
            try:
                folder.rmdir()
            except OSError:
                kept.extend(p for p in folder.iterdir() if p.is_file())
        return RemoveResult(tuple(removed), tuple(kept))


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def write_all(f: BinaryIO, data: bytes) -> None:
    """Write every byte; the one place store payloads are written (disk-full is raised here)."""
    view = memoryview(data)
    while view:
        written = f.write(view)
        if written is None or written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def free_space(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (its nearest existing ancestor)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None
