"""The model download's options, results and errors (pure data, any thread)."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.model.store.errors import ModelStoreError
from runtime.model.store.records import REPO_ID

REVISION_ENV = "IMTALKER_MODEL_REVISION"
DEFAULT_REVISION = "main"
"""Used until a download has resolved it to a commit; the store then stays on that commit
(recorded in store.json), so files fetched later always come from the same revision."""


@dataclass(frozen=True)
class DownloadOptions:
    repo_id: str = REPO_ID
    revision: str | None = None  # None: $IMTALKER_MODEL_REVISION, else the store's, else main
    endpoint: str | None = None  # None: huggingface_hub's ($HF_ENDPOINT or huggingface.co)
    token: str | None = None  # None: the token huggingface_hub has stored, if any
    force: bool = False  # download again even when the store already has a verified copy
    retries: int = 5  # resumptions after a dropped connection, per file, without progress
    retry_wait: float = 1.0  # seconds before the first resumption; doubles, at most 30 s
    timeout: float = 30.0  # seconds without data before a connection counts as dropped
    progress_interval: float = 0.1  # at most this often, in seconds, besides file boundaries


class DownloadError(ModelStoreError):
    """The download could not complete; what was already downloaded is kept."""


class OfflineError(DownloadError):
    """The hub cannot be reached. The message includes the manual install steps."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    url: str  # where the bytes are (the CDN location when the hub redirects)
    size: int | None
    etag: str | None
    commit: str


@dataclass(frozen=True)
class DownloadResult:
    commit: str
    downloaded: tuple[str, ...]
    unchanged: tuple[str, ...]
    bytes_transferred: int
