"""Fetching one file of the model from the Hugging Face Hub (the download's calling thread):
resolve it (commit, size, ETag), stream it into `.<name>.incomplete` beside its final path,
resume a dropped connection with a `Range` request, and check it against the hub's checksum
before `runtime.model.download.model_download` installs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from importlib import metadata as importlib_metadata
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # lazy export

from runtime.core import paths
from runtime.core.files import atomic_write_bytes, write_all
from runtime.core.units import human_bytes
from runtime.model.download.types import (
    DEFAULT_REVISION,
    REVISION_ENV,
    DownloadError,
    DownloadOptions,
    OfflineError,
    RemoteFile,
)
from runtime.model.files import HASH_CHUNK, git_blob_sha1
from runtime.model.store.errors import Cancelled, VerificationError
from runtime.model.store.model_store import ModelStore
from runtime.model.transfer import ProgressReporter

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")
_CANCELLED = "download cancelled; run it again to resume"


def resolve_revision(store: ModelStore, options: DownloadOptions) -> str:
    if options.revision:
        return options.revision
    env = os.environ.get(REVISION_ENV)
    if env:
        return env
    record = store.read_record()
    if record.revision and record.repo_id == options.repo_id:
        return record.revision
    return DEFAULT_REVISION


def _endpoint(options: DownloadOptions) -> str:
    return (options.endpoint or hf_constants.ENDPOINT).rstrip("/")


def manual_steps(store: ModelStore, *, options: DownloadOptions, revision: str) -> str:
    """What a user behind a firewall does instead: which files, from where, and the import."""
    endpoint = _endpoint(options)
    files = [e.path for e in store.manifest]
    lines = [
        "To install the model by hand:",
        f"  1. On a computer with internet access, download these {len(files)} files from",
        f"     {endpoint}/{options.repo_id}/tree/{revision}",
    ]
    lines += [f"       {f}" for f in files]
    lines.append("     Direct links:")
    lines += [
        f"       {hf_hub_url(options.repo_id, f, revision=revision, endpoint=endpoint)}"
        for f in files
    ]
    lines += [
        "  2. Put them in one folder, keeping the wav2vec2-base-960h/ subfolder",
        "     (or pass the files one by one to the import command).",
        "  3. Run:  imtalker-cam models import FOLDER",
        "Behind a proxy, set HTTPS_PROXY; to use a Hugging Face mirror, set HF_ENDPOINT.",
    ]
    return "\n".join(lines)


def _library_version() -> str:
    try:
        return importlib_metadata.version(paths.APP_NAME)
    except importlib_metadata.PackageNotFoundError:
        return "dev"


def _no_telemetry() -> None:
    """The app sends no telemetry. Besides, with telemetry on, huggingface_hub's first request
    fetches an "agent harness" list from huggingface.co itself (even with a custom endpoint),
    which stalls behind a firewall; HF_HUB_DISABLE_TELEMETRY turns both off."""
    hf_constants.HF_HUB_DISABLE_TELEMETRY = True


def _headers(options: DownloadOptions) -> dict[str, str]:
    headers = build_hf_headers(
        token=options.token, library_name=paths.APP_NAME, library_version=_library_version()
    )
    # The size and the hash are of the raw bytes: never let a proxy compress them.
    headers["Accept-Encoding"] = "identity"
    return headers


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port)


class _Fetcher:
    """One download session: resolves files and streams them into the store."""

    def __init__(
        self,
        store: ModelStore,
        options: DownloadOptions,
        cancel: threading.Event | None,
    ) -> None:
        _no_telemetry()
        self.store = store
        self.options = options
        self.cancel = cancel
        self.endpoint = _endpoint(options)
        self.revision = resolve_revision(store, options)
        self.requested_revision = self.revision

    # ---- errors

    def _fail(self, reason: str, *, offline: bool) -> DownloadError:
        steps = manual_steps(self.store, options=self.options, revision=self.requested_revision)
        if offline:
            return OfflineError(
                f"Cannot reach the model repository at {self.endpoint} ({reason}).\n"
                f"Files already in {self.store.root} were left as they were.\n{steps}"
            )
        return DownloadError(f"{reason}\n{steps}")

    # ---- metadata

    def head(self, relpath: str) -> RemoteFile:
        url = hf_hub_url(
            self.options.repo_id, relpath, revision=self.revision, endpoint=self.endpoint
        )
        try:
            meta = get_hf_file_metadata(
                url,
                token=self.options.token,
                timeout=self.options.timeout,
                library_name=paths.APP_NAME,
                library_version=_library_version(),
                endpoint=self.endpoint,
            )
        except OfflineModeIsEnabled as exc:
            raise self._fail("offline mode is on: HF_HUB_OFFLINE is set", offline=True) from exc
        except httpx2.ProxyError as exc:
            raise self._fail(f"the proxy refused: {exc}", offline=True) from exc
        except httpx2.ConnectError as exc:
            raise self._fail(f"connection failed: {exc}", offline=True) from exc
        except httpx2.TimeoutException as exc:
            raise self._fail("the connection timed out", offline=True) from exc
        except httpx2.TransportError as exc:
            raise self._fail(f"network error: {exc}", offline=True) from exc
        except GatedRepoError as exc:
            raise self._fail(
                f"{self.options.repo_id} is gated: accept its terms on the hub and log in "
                "with `hf auth login`",
                offline=False,
            ) from exc
        except RepositoryNotFoundError as exc:
            raise self._fail(
                f"the repository {self.options.repo_id} was not found at {self.endpoint}",
                offline=False,
            ) from exc
        except RevisionNotFoundError as exc:
            raise self._fail(
                f"revision {self.revision!r} of {self.options.repo_id} was not found",
                offline=False,
            ) from exc
        except RemoteEntryNotFoundError as exc:
            raise self._fail(
                f"{relpath} is not in {self.options.repo_id} at revision {self.revision!r}",
                offline=False,
            ) from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise self._fail(
                f"the server at {self.endpoint} answered HTTP {status} for {relpath}",
                offline=False,
            ) from exc
        if not meta.commit_hash or not meta.etag:
            raise self._fail(
                f"the server at {self.endpoint} does not answer like the Hugging Face Hub "
                "(a firewall or captive portal in the way?)",
                offline=True,
            )
        if meta.commit_hash != self.revision:
            logger.info("revision %s of %s is commit %s", self.revision, relpath, meta.commit_hash)
        # Everything after the first file comes from that same commit, even if the branch moves.
        self.revision = meta.commit_hash
        return RemoteFile(
            path=relpath,
            url=meta.location or url,
            size=meta.size,
            etag=meta.etag.lower(),
            commit=meta.commit_hash,
        )

    # ---- decisions

    def up_to_date(self, remote: RemoteFile) -> bool:
        """True when the store already has a verified copy of exactly this remote file."""
        status = self.store.file_status(remote.path)
        if not status.verified or status.sha256 is None:
            return False
        if remote.etag and _SHA256.fullmatch(remote.etag):
            return status.sha256 == remote.etag
        if remote.etag and _GIT_SHA1.fullmatch(remote.etag):
            return git_blob_sha1(self.store.path(remote.path)) == remote.etag
        return remote.size is not None and status.size == remote.size

    def check_against_record(self, remote: RemoteFile) -> None:
        """Fail before downloading when the hub's file cannot match the one first verified."""
        pinned = self.store.pinned_sha256(remote.path)
        if pinned and remote.etag and _SHA256.fullmatch(remote.etag) and remote.etag != pinned:
            raise VerificationError(
                f"{remote.path}: the hub's copy at commit {remote.commit} has SHA-256 "
                f"{remote.etag}, not {pinned} as pinned or first verified. Nothing was "
                "downloaded. To switch to a different model version, run "
                "`imtalker-cam models remove` first."
            )

    def partial_offset(self, remote: RemoteFile) -> int:
        """How many bytes of a previous attempt can be reused (0 if none or stale)."""
        partial = self.store.partial_path(remote.path)
        info = self.store.partial_info_path(remote.path)
        try:
            saved = json.loads(info.read_text(encoding="utf-8"))
            size = partial.stat().st_size
        except (OSError, ValueError):
            return 0
        same = saved.get("etag") == remote.etag and saved.get("size") == remote.size
        if not same or (remote.size is not None and size > remote.size):
            return 0
        return size

    # ---- transfer

    def _open_stream(
        self, url: str, offset: int
    ) -> contextlib.AbstractContextManager[httpx2.Response]:
        headers = _headers(self.options)
        if _origin(url) != _origin(self.endpoint):
            headers.pop("authorization", None)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        timeout = httpx2.Timeout(self.options.timeout, connect=min(10.0, self.options.timeout))
        return get_session().stream(
            "GET", url, headers=headers, timeout=timeout, follow_redirects=True
        )

    def _wait_before_retry(self, attempt: int) -> None:
        delay = min(30.0, self.options.retry_wait * 2 ** (attempt - 1))
        if self.cancel is not None:
            if self.cancel.wait(delay):
                raise Cancelled(_CANCELLED)
        else:
            time.sleep(delay)

    def fetch(
        self, remote: RemoteFile, index: int, reporter: ProgressReporter
    ) -> tuple[str, int, int]:
        """Stream `remote` into its partial file; returns (sha256, size, bytes transferred)."""
        store = self.store
        final = store.path(remote.path)
        partial = store.partial_path(remote.path)
        info = store.partial_info_path(remote.path)
        final.parent.mkdir(parents=True, exist_ok=True)

        offset = self.partial_offset(remote)
        hasher = hashlib.sha256()
        if offset:
            logger.info("resuming %s at %s", remote.path, human_bytes(offset))
            with open(partial, "rb") as f:
                _hash_prefix(f, hasher, offset, self.cancel)
        else:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            info_data = {"etag": remote.etag, "size": remote.size, "commit": remote.commit}
            atomic_write_bytes(info, json.dumps(info_data).encode())
        reporter.done += offset
        transferred = 0
        attempt = 0
        url = remote.url
        with open(partial, "ab") as out:
            while remote.size is None or offset < remote.size:
                start = offset
                try:
                    if attempt:
                        url = self._refresh(remote).url
                    with self._open_stream(url, offset) as response:
                        if response.status_code >= 400:
                            response.read()
                            hf_raise_for_status(response)
                        if offset and response.status_code != 206:
                            # The server ignored the Range header: start over.
                            out.seek(0)
                            out.truncate()
                            reporter.done -= offset
                            offset = 0
                            hasher = hashlib.sha256()
                        elif offset:
                            _check_content_range(response, offset, remote.path)
                        # Unchunked, so every byte received before a drop is kept.
                        for chunk in response.iter_bytes():
                            if self.cancel is not None and self.cancel.is_set():
                                raise Cancelled(_CANCELLED)
                            write_all(out, chunk)
                            hasher.update(chunk)
                            offset += len(chunk)
                            transferred += len(chunk)
                            reporter.done += len(chunk)
                            reporter.report(
                                phase="download",
                                path=remote.path,
                                file_index=index,
                                file_done=offset,
                                file_total=remote.size,
                            )
                    if remote.size is None:
                        break
                    if offset < remote.size:
                        raise httpx2.RemoteProtocolError("the server ended the file early")
                except httpx2.TransportError as exc:
                    out.flush()
                    if offset > start:
                        attempt = 0
                    attempt += 1
                    if attempt > self.options.retries:
                        raise DownloadError(
                            f"the download of {remote.path} was interrupted ({exc}) after "
                            f"{human_bytes(offset)}; what arrived is kept, run the download "
                            "again to resume."
                        ) from exc
                    logger.warning(
                        "%s: connection dropped at %s (%s); resuming",
                        remote.path,
                        human_bytes(offset),
                        exc,
                    )
                    self._wait_before_retry(attempt)
                except HfHubHTTPError as exc:
                    raise DownloadError(
                        f"the download of {remote.path} failed: {exc}; what arrived is kept, "
                        "run the download again to resume."
                    ) from exc
            out.flush()
            os.fsync(out.fileno())
        reporter.report(
            phase="download",
            path=remote.path,
            file_index=index,
            file_done=offset,
            file_total=remote.size,
            force=True,
        )
        return hasher.hexdigest(), offset, transferred

    def _refresh(self, remote: RemoteFile) -> RemoteFile:
        """Resolve again before resuming: signed CDN addresses expire."""
        fresh = self.head(remote.path)
        if fresh.etag != remote.etag or fresh.size != remote.size:
            raise DownloadError(
                f"{remote.path} changed on the hub during the download; run it again."
            )
        return fresh

    def check_hub_digest(self, remote: RemoteFile, sha256: str, size: int) -> None:
        """The hub's own checksum: the LFS ETag is the SHA-256, a git ETag the blob id."""
        partial = self.store.partial_path(remote.path)
        problem = None
        if remote.size is not None and size != remote.size:
            problem = f"received {size} bytes, the hub says {remote.size}"
        elif remote.etag and _SHA256.fullmatch(remote.etag) and sha256 != remote.etag:
            problem = f"SHA-256 {sha256} does not match the hub's {remote.etag}"
        elif remote.etag and _GIT_SHA1.fullmatch(remote.etag):
            blob = git_blob_sha1(partial)
            if blob != remote.etag:
                problem = f"git blob id {blob} does not match the hub's {remote.etag}"
        if problem:
            _discard(self.store, remote.path)
            raise VerificationError(
                f"{remote.path}: {problem} (corrupted in transit). The file was deleted; "
                "run the download again."
            )


def _hash_prefix(
    f: BinaryIO, hasher: hashlib._Hash, length: int, cancel: threading.Event | None
) -> None:
    remaining = length
    while remaining:
        if cancel is not None and cancel.is_set():
            raise Cancelled(_CANCELLED)
        chunk = f.read(min(remaining, HASH_CHUNK))
        if not chunk:
            raise DownloadError("the partial download shrank while being read")
        hasher.update(chunk)
        remaining -= len(chunk)


def _check_content_range(response: httpx2.Response, offset: int, relpath: str) -> None:
    value = response.headers.get("Content-Range", "")
    match = re.match(r"bytes (\d+)-", value)
    if match is None or int(match.group(1)) != offset:
        raise DownloadError(f"{relpath}: the server resumed at the wrong place ({value!r})")


def _discard(store: ModelStore, relpath: str) -> None:
    for path in (store.partial_path(relpath), store.partial_info_path(relpath)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
