"""What the model store knows, as values: the published files it expects, the `store.json`
record of what was verified, and status/result types (pure data, any thread).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from runtime.core.damaged import parse_json

REPO_ID = "cbsjtu01/IMTalker"
"""The model repository on the Hugging Face Hub that publishes the checkpoints."""


STORE_FILE = "store.json"


STORE_FORMAT = 1


WAV2VEC_DIR = "wav2vec2-base-960h"


@dataclass(frozen=True)
class ExpectedFile:
    """One file of the published repository. `size`/`sha256` are pinned where known."""

    path: str  # POSIX path relative to the repository root
    kind: Literal["checkpoint", "json"]
    description: str
    size: int | None = None
    sha256: str | None = None
    part: str | None = None
    """The model part a checkpoint holds ("renderer", "generator", "wav2vec2"), which the
    checkpoint inspector checks it as."""

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


# No digest is pinned yet: the published repository lists none and this project has not
# downloaded it through a trusted channel. Until then the hub's own content hash (the LFS
# ETag, checked on every download) and the digest recorded at first verification in
# `store.json` are what a file is checked against. Pin sizes and digests here once known.
MANIFEST: tuple[ExpectedFile, ...] = (
    ExpectedFile("renderer.ckpt", "checkpoint", "renderer", part="renderer"),
    ExpectedFile(
        "generator.ckpt", "checkpoint", "motion generator (flow matching)", part="generator"
    ),
    ExpectedFile(f"{WAV2VEC_DIR}/config.json", "json", "wav2vec2 configuration"),
    ExpectedFile(
        f"{WAV2VEC_DIR}/pytorch_model.bin", "checkpoint", "wav2vec2 audio encoder", part="wav2vec2"
    ),
    ExpectedFile(f"{WAV2VEC_DIR}/preprocessor_config.json", "json", "wav2vec2 preprocessor"),
    ExpectedFile(
        f"{WAV2VEC_DIR}/feature_extractor_config.json", "json", "wav2vec2 feature extractor"
    ),
)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    size: int
    mtime_ns: int
    first_verified: str
    source: str
    model_version: str | None = None
    """The IMTalker version ("v1", "v2") the checkpoint inspector found (renderer, generator)."""
    changed_sha256: str | None = None
    """The digest the file was found to have since it was verified (by a conversion that read
    it), though its size and date are unchanged: not verified until restored."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sha256": self.sha256,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "first_verified": self.first_verified,
            "source": self.source,
        }
        if self.model_version is not None:
            out["model_version"] = self.model_version
        if self.changed_sha256 is not None:
            out["changed_sha256"] = self.changed_sha256
        return out

    @staticmethod
    def from_json(raw: Any) -> FileRecord:
        """Strictly: a SHA-256 of 64 hex digits, whole non-negative sizes, text dates.
        Raises DamagedRecordError naming what is wrong."""
        if not isinstance(raw, dict):
            raise DamagedRecordError(f"{type(raw).__name__}, not an object")
        sha = raw.get("sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise DamagedRecordError("sha256 is not 64 hex digits")
        size, mtime = raw.get("size"), raw.get("mtime_ns")
        for name, value in (("size", size), ("mtime_ns", mtime)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DamagedRecordError(f"{name} is not a whole number >= 0")
        first, source = raw.get("first_verified"), raw.get("source", "")
        if not isinstance(first, str) or not isinstance(source, str):
            raise DamagedRecordError("first_verified or source is not text")
        version = raw.get("model_version")
        if version is not None and not isinstance(version, str):
            raise DamagedRecordError("model_version is not text")
        changed = raw.get("changed_sha256")
        if changed is not None and (not isinstance(changed, str) or not _SHA256.fullmatch(changed)):
            raise DamagedRecordError("changed_sha256 is not 64 hex digits")
        assert isinstance(size, int) and isinstance(mtime, int)
        return FileRecord(
            sha256=sha.lower(),
            size=size,
            mtime_ns=mtime,
            first_verified=first,
            source=source,
            model_version=version,
            changed_sha256=changed.lower() if changed is not None else None,
        )


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class DamagedRecordError(ValueError):
    """`store.json` cannot be trusted as a whole; `salvaged` holds the entries that parsed."""

    def __init__(self, reason: str, salvaged: StoreRecord | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.salvaged = salvaged


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


def parse_record(data: bytes) -> StoreRecord:
    """`store.json`'s bytes as a record; DamagedRecordError says why they are not one (not
    UTF-8, not JSON, nested too deeply, wrong types), with whatever entries could be read."""
    try:
        raw = parse_json(data)
    except ValueError as exc:
        raise DamagedRecordError(str(exc)) from None
    if not isinstance(raw, dict):
        raise DamagedRecordError(f"a JSON {type(raw).__name__}, not an object")
    problems: list[str] = []
    origin: dict[str, str | None] = {}
    for key in ("repo_id", "revision"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key} is not text")
            value = None
        origin[key] = value
    files_raw = raw.get("files") or {}
    files: dict[str, FileRecord] = {}
    if not isinstance(files_raw, dict):
        problems.append("files is not an object")
        files_raw = {}
    known = {e.path for e in MANIFEST}
    for name, entry in files_raw.items():
        if name not in known:
            problems.append(f"{name!r} is not a file of the model")
            continue
        try:
            files[name] = FileRecord.from_json(entry)
        except DamagedRecordError as exc:
            problems.append(f"{name}: {exc.reason}")
    record = StoreRecord(repo_id=origin["repo_id"], revision=origin["revision"], files=files)
    if problems:
        raise DamagedRecordError("; ".join(problems[:3]), salvaged=record)
    return record


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
    notice: str | None = None  # something the user must be told (a rebuilt store.json)

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
    not_recorded: tuple[Path, ...] = ()  # model-named files the store never recorded (kept)
