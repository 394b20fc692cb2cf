"""A local stand-in for the Hugging Face Hub's file endpoints, for the model-download tests.

Serves `HEAD`/`GET /{repo_id}/resolve/{revision}/{path}` on 127.0.0.1 the way the hub does:
`X-Repo-Commit`, an `ETag` that is the SHA-256 of LFS files (`X-Linked-Etag`/`X-Linked-Size`
too) or the git blob id of small files, `Content-Length`, and `Range` requests answered with
206. With `cdn=True`, LFS files redirect (302) to a second server on another port, like the
hub's CDN. Faults for tests: cut a response after N body bytes, flip a byte, ignore `Range`.
Also writes the small stand-in checkpoints the download tests serve.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import socket
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ID = "cbsjtu01/IMTalker"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def standin_checkpoint(seed: int, size: int) -> bytes:
    """A small file shaped like torch.save's zip format (what the store's format check reads)."""
    rng = random.Random(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", rng.randbytes(size))
        zf.writestr("archive/version", b"3\n")
    return buf.getvalue()


def standin_files(*, seed: int = 0, version: str = "v1") -> dict[str, bytes]:
    """Every file of the model, small: checkpoints of a few hundred KB with every key and
    shape of the real ones (they pass the checkpoint inspector), real JSON configs."""
    from tests.support.skeleton_checkpoints import skeleton_checkpoint

    cfg = {"model_type": "wav2vec2", "hidden_size": 768, "seed": seed}
    fe = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000}
    return {
        "renderer.ckpt": skeleton_checkpoint(
            "renderer", version=version, seed=seed + 1, size=300_000
        ),
        "generator.ckpt": skeleton_checkpoint(
            "generator", version=version, seed=seed + 2, size=200_000
        ),
        "wav2vec2-base-960h/config.json": json.dumps(cfg, indent=2).encode(),
        "wav2vec2-base-960h/pytorch_model.bin": skeleton_checkpoint(
            "wav2vec2", seed=seed + 3, size=150_000
        ),
        "wav2vec2-base-960h/preprocessor_config.json": json.dumps(fe).encode(),
        "wav2vec2-base-960h/feature_extractor_config.json": json.dumps(fe, indent=1).encode(),
    }


def write_tree(root: Path, files: Mapping[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` by its POSIX path relative to it ({} when `root` is missing):
    what `write_tree` takes, to compare a folder before and after."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def is_lfs(path: str) -> bool:
    return not path.endswith(".json")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    files: dict[str, bytes]
    repo_id: str = REPO_ID
    commit: str = COMMIT
    cdn: bool = False
    # Per file: body byte counts after which the next GET responses are cut (one per GET).
    cut_after: dict[str, list[int]] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)  # served with one byte flipped
    ignore_range: bool = False
    requests: list[Request] = field(default_factory=list)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- lifecycle

    def __enter__(self) -> FakeHub:
        self._servers.append(self._serve("hub"))
        if self.cdn:
            self._servers.append(self._serve("cdn"))
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def url(self) -> str:
        return self._url(0)

    def _url(self, index: int) -> str:
        host, port = self._servers[index].server_address[:2]
        return f"http://{host!s}:{port}"

    def _serve(self, role: str) -> ThreadingHTTPServer:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        Handler.role = role
        server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    # ---- what tests look at

    def gets(self, path_suffix: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.path.endswith(path_suffix)]

    def blob_path(self, rel: str) -> str:
        return f"/blobs/{sha256(self.files[rel])}"

    def etag(self, rel: str) -> str:
        data = self.files[rel]
        return sha256(data) if is_lfs(rel) else git_blob_id(data)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response is what several tests do on purpose.
        pass


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    role: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    def _error(self, status: int, code: str, extra: Mapping[str, str] | None = None) -> None:
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self, *, head: bool) -> None:
        hub = self.hub
        with hub._lock:
            hub.requests.append(
                Request(self.role, self.command, self.path, self.headers.get("Range"))
            )
        if self.role == "cdn":
            match = re.fullmatch(r"/blobs/([0-9a-f]{64})", self.path)
            rel = next(
                (r for r in hub.files if match and sha256(hub.files[r]) == match.group(1)), None
            )
            if rel is None:
                self._error(404, "NoSuchKey")
                return
            self._send_file(rel, head=head, hub_headers=False)
            return
        prefix = f"/{hub.repo_id}/resolve/"
        if not self.path.startswith(prefix):
            self._error(401, "RepoNotFound")
            return
        revision, _, rel = self.path[len(prefix) :].partition("/")
        if revision not in ("main", hub.commit):
            self._error(404, "RevisionNotFound")
            return
        if rel not in hub.files:
            self._error(404, "EntryNotFound", {"X-Repo-Commit": hub.commit})
            return
        if hub.cdn and is_lfs(rel):
            self.send_response(302)
            self.send_header("Location", hub._url(1) + hub.blob_path(rel))
            self.send_header("X-Repo-Commit", hub.commit)
            self.send_header("X-Linked-Etag", f'"{hub.etag(rel)}"')
            self.send_header("X-Linked-Size", str(len(hub.files[rel])))
            self.send_header("ETag", '"pointer-etag"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(rel, head=head, hub_headers=True)

    def _send_file(self, rel: str, *, head: bool, hub_headers: bool) -> None:
        hub = self.hub
        data = hub.files[rel]
        if rel in hub.corrupt:
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            data = bytes(flipped)
        start = 0
        status = 200
        wanted = self.headers.get("Range")
        if wanted and not head and not hub.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", wanted)
            if match is None or int(match.group(1)) >= len(data):
                self._error(416, "RangeNotSatisfiable")
                return
            start = int(match.group(1))
            status = 206
        body = data[start:]
        self.send_response(status)
        if hub_headers:
            self.send_header("X-Repo-Commit", hub.commit)
            self.send_header("ETag", f'"{hub.etag(rel)}"')
            if is_lfs(rel):
                self.send_header("X-Linked-Etag", f'"{hub.etag(rel)}"')
                self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        cut = None
        with hub._lock:
            pending = hub.cut_after.get(rel)
            if pending:
                cut = pending.pop(0)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            # Drop the connection mid-body, as a flaky network does.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        view = memoryview(body)
        for i in range(0, len(view), 64 * 1024):
            self.wfile.write(view[i : i + 64 * 1024])
