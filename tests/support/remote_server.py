"""Starts `imtalker-cam serve` on loopback for a test module (one Ray instance per module), and
a plain WebSocket client that speaks the protocol message by message."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from websockets.sync.client import ClientConnection, connect

from runtime.remote import protocol as P
from runtime.remote.codec import decode_frame
from tests.conftest import ROOT
from tests.support.remote import TOKEN, free_port
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]
    startup_s: float

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(graphs: Path, folder: Path, *extra: str, timeout_s: float = 180.0) -> Iterator[Server]:
    port = free_port()
    log = folder / "serve.log"
    # Ray's sockets live under its temp dir: a short path (the Unix socket path limit).
    ray_tmp = tempfile.mkdtemp(prefix="imtray")
    env = {
        **os.environ,
        "IMTALKER_CONFIG_DIR": str(folder / "config"),
        "IMTALKER_CACHE_DIR": str(folder / "cache"),
        "RAY_TMPDIR": ray_tmp,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "runtime.commands.cli", "serve", "--graphs", str(graphs)]
    cmd += ["--token", TOKEN, "--port", str(port), "--num-cpus", "2", *extra]
    t0 = time.monotonic()
    with open(log, "wb") as out:
        # Its own process group: Ray's per-node agents outlive `ray.shutdown` by minutes; the
        # teardown ends what is left of the group.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    try:

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text()}")
            return "serving ws://" in log.read_text(errors="replace")

        if not eventually(serving, timeout_s, poll_s=0.2):
            raise AssertionError(f"serve did not start in {timeout_s} s:\n{log.read_text()}")
        yield Server(
            url=f"ws://127.0.0.1:{port}",
            log=log,
            proc=proc,
            startup_s=time.monotonic() - t0,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


class RawSession:
    """One session spoken message by message (no link, no reconnects)."""

    def __init__(self, url: str, *, token: str = TOKEN, **hello: Any) -> None:
        self.ws: ClientConnection = connect(
            url + "/session", proxy=None, compression=None, max_size=None, open_timeout=10
        ).__enter__()
        self.ws.send(P.Hello(token=token, frame_format="raw", **hello).to_text())

    def text(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next text message (frames before it are skipped)."""
        end = time.monotonic() + timeout
        while True:
            data = self.ws.recv(timeout=max(0.01, end - time.monotonic()))
            if isinstance(data, str):
                message: dict[str, Any] = json.loads(data)
                return message

    def close(self) -> None:
        self.ws.close()


def grey_less(server: Server) -> RawSession:
    s = RawSession(server.url)
    ready = s.text()
    assert ready["kind"] == "ready", ready
    return s


def collect_frames(s: RawSession, timeout: float = 20.0) -> dict[int, np.ndarray]:
    """Frames until 'ended' (index -> image; -1 the idle picture)."""
    frames: dict[int, np.ndarray] = {}
    end = time.monotonic() + timeout
    while True:
        data = s.ws.recv(timeout=max(0.01, end - time.monotonic()))
        if isinstance(data, bytes):
            header, payload = P.unpack_frame(data)
            frames[header.index] = decode_frame(header, payload)
        elif json.loads(data)["kind"] == "ended":
            return frames
        elif json.loads(data)["kind"] == "error":
            raise AssertionError(data)
