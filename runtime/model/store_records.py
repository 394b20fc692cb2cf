"""What the model store knows, as values: the published files it expects, the `store.json`
record of what was verified, and status/result types (pure data, any thread).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

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

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


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


def utc_now() -> str:
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
