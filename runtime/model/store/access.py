"""What the store's import and recovery need of a model store, as a protocol (any thread).

`ModelStore` satisfies it; `importing` and `recovery` are written against it, so the store uses
them without their importing the store back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from runtime.model.store.records import ExpectedFile, FileStatus, StoreRecord


class StoreAccess(Protocol):
    root: Path
    manifest: tuple[ExpectedFile, ...]

    @property
    def record_path(self) -> Path: ...

    def path(self, relpath: str) -> Path: ...

    def check_root(self, *, writable: bool = True) -> None: ...

    def locate(self, sources: Sequence[Path]) -> dict[str, Path]: ...

    def file_status(self, relpath: str) -> FileStatus: ...

    def write_record(self, record: StoreRecord) -> None: ...

    def model_version(self) -> str | None: ...

    def inspect_versions(
        self, candidates: dict[str, tuple[Path, str]]
    ) -> dict[str, str | None]: ...

    def check_versions(self, incoming: dict[str, str | None], *, switching: bool) -> None: ...

    def candidate_problem(
        self, relpath: str, candidate: Path, *, sha256: str, size: int, switching: bool = False
    ) -> str: ...

    def place_verified(
        self,
        relpath: str,
        candidate: Path,
        *,
        sha256: str,
        size: int,
        source: str,
        model_version: str | None,
    ) -> None: ...
