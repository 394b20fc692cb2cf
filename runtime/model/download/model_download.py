"""Download the published IMTalker checkpoints from the Hugging Face Hub into the model store.

Runs on the calling thread (the CLI's main thread, or a GUI worker thread); the progress
callback is called on that thread, at most ten times a second. Cancel from any thread by
setting the `threading.Event` passed as `cancel`.

How: huggingface_hub resolves each file (`hf_hub_url` + `get_hf_file_metadata`: the commit,
size and ETag, which for LFS files is the SHA-256 of the content), then the bytes are streamed
with huggingface_hub's HTTP session into `.<name>.incomplete` next to the final path. A
dropped connection is resumed with a `Range` request, within the same call (`retries`) or on
the next call (the partial file and its ETag stay on disk). The file is checked against the
hub's checksum, the pinned digests and the digest recorded at first verification before it
is renamed into place; a mismatch deletes it.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from runtime.core.files import free_space as _free_space
from runtime.core.files import is_disk_full
from runtime.core.units import human_bytes
from runtime.model.download.hub_fetch import _discard, _Fetcher, manual_steps, resolve_revision
from runtime.model.download.types import (
    DEFAULT_REVISION,
    REVISION_ENV,
    DownloadError,
    DownloadOptions,
    DownloadResult,
    OfflineError,
    RemoteFile,
)
from runtime.model.store.errors import DiskFullError, VerificationError
from runtime.model.store.model_store import ModelStore
from runtime.model.transfer import ProgressCallback, ProgressReporter

logger = logging.getLogger(__name__)

_DISK_MARGIN = 64 << 20

__all__ = [
    "DEFAULT_REVISION",
    "REVISION_ENV",
    "DownloadError",
    "DownloadOptions",
    "DownloadResult",
    "OfflineError",
    "RemoteFile",
    "download_model",
    "manual_steps",
    "resolve_revision",
]


def download_model(
    store: ModelStore,
    *,
    options: DownloadOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Bring every file of the model into `store`, verified. Files already verified and
    identical to the hub's are kept. Raises `OfflineError` (with manual steps),
    `DownloadError`, `VerificationError`, `DiskFullError` or `Cancelled`."""
    options = options or DownloadOptions()
    store.check_root()
    fetcher = _Fetcher(store, options, cancel)
    remotes = [fetcher.head(entry.path) for entry in store.manifest]
    commit = fetcher.revision
    record = store.read_record()
    store.root.mkdir(parents=True, exist_ok=True)
    if record.revision is None:
        store.set_origin(repo_id=options.repo_id, revision=commit)

    todo: list[RemoteFile] = []
    unchanged: list[str] = []
    for remote in remotes:
        if not options.force and fetcher.up_to_date(remote):
            unchanged.append(remote.path)
            continue
        fetcher.check_against_record(remote)
        todo.append(remote)

    need = sum((r.size or 0) - fetcher.partial_offset(r) for r in todo if r.size is not None)
    free = _free_space(store.root)
    if free is not None and need + _DISK_MARGIN > free:
        raise DiskFullError(
            f"the model needs {human_bytes(need)} more in {store.root}, but only "
            f"{human_bytes(free)} is free. Free some space and run the download again."
        )

    total = sum(r.size or 0 for r in todo) if all(r.size is not None for r in todo) else None
    reporter = ProgressReporter(
        progress, total=total, file_count=len(todo), interval=options.progress_interval
    )
    downloaded: list[str] = []
    transferred = 0
    for index, remote in enumerate(todo):
        try:
            sha256, size, moved = fetcher.fetch(remote, index, reporter)
            transferred += moved
            fetcher.check_hub_digest(remote, sha256, size)
            store.install(
                remote.path,
                store.partial_path(remote.path),
                sha256=sha256,
                size=size,
                source=f"download {options.repo_id}@{remote.commit}",
            )
        except VerificationError:
            _discard(store, remote.path)
            raise
        except OSError as exc:
            if is_disk_full(exc):
                _discard(store, remote.path)
                raise DiskFullError(
                    f"the disk holding {store.root} is full; the partial download of "
                    f"{remote.path} was deleted and the files already in the store were left "
                    "as they were. Free some space and run the download again."
                ) from exc
            raise DownloadError(f"could not write {remote.path}: {exc}") from exc
        with contextlib.suppress(FileNotFoundError):
            store.partial_info_path(remote.path).unlink()
        downloaded.append(remote.path)

    store.set_origin(repo_id=options.repo_id, revision=commit)
    return DownloadResult(
        commit=commit,
        downloaded=tuple(downloaded),
        unchanged=tuple(unchanged),
        bytes_transferred=transferred,
    )
