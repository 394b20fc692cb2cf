"""The render server against hostile clients, in-process (no Ray): values that used to end a
connection without a word, floods, silent sockets and half HTTP requests on 127.0.0.1 (the
front gate in front of the session code, as `serve` runs them), and the server's memory
returning to its baseline after a flood. Timeouts are set small; real time only bounds waits."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from runtime.model.execution.sessions import ModelSet
from runtime.remote import protocol as P
from runtime.remote.codec import encode_photo
from runtime.server.connection import Admission, ServerContext, handle
from runtime.server.gate import GateLimits, start_gate
from runtime.server.limits import ServerLimits, TokenBucket
from tests.support.live import stub_models
from tests.support.remote import TOKEN, InProcessServer, MemoryChannel, free_port


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return stub_models(tmp_path_factory.mktemp("stubs"))


def _hello(**kw: Any) -> str:
    return P.Hello(token=TOKEN, frame_format="raw", **kw).to_text()


async def _exchange(ctx: ServerContext, messages: list[str | bytes]) -> tuple[Any, MemoryChannel]:
    """Feeds `messages`; returns the server's `error` (or None) and the channel."""
    channel = MemoryChannel()
    for m in messages:
        channel.inbox.put_nowait(m)
    server = asyncio.create_task(handle(channel, ctx))
    error = None
    while error is None and not (server.done() and channel.outbox.empty()):
        try:
            item = await asyncio.wait_for(channel.outbox.get(), 0.5)
        except TimeoutError:
            break
        if isinstance(item, str) and json.loads(item)["kind"] == "error":
            error = json.loads(item)
    channel.inbox.put_nowait(None)
    await asyncio.wait_for(server, 10)
    return error, channel


def _png_header(side: int) -> bytes:
    """A PNG that claims `side` x `side` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(side // 8 + 1) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BOMB = _png_header(30000)

BAD_VALUES: dict[str, tuple[list[str | bytes], str, str]] = {
    "ping at infinity": (
        [_hello(), '{"kind": "ping", "t": 1e999}'],
        P.MALFORMED,
        "number out of range",
    ),
    "ping time as text": ([_hello(), P.text("ping", t="x" * 15000)], P.MALFORMED, "ping's time"),
    "start frame 3e9": ([_hello(start_frame=3_000_000_000)], P.MALFORMED, "start_frame"),
    "huge integer": (
        [_hello(), '{"kind": "controls", "nfe": ' + "9" * 400 + "}"],
        P.MALFORMED,
        "out of range",
    ),
    "PNG bomb": (
        [_hello(), P.text("avatar", bytes=len(BOMB)), P.pack_avatar(BOMB)],
        P.TOO_LARGE,
        "30000x30000 pixels",
    ),
    "long kind": ([_hello(), P.text("é" * 2000)], P.MALFORMED, "unknown message kind"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_refused_with_a_close_reason(models: ModelSet, case: str) -> None:
    messages, code, match = BAD_VALUES[case]
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=1))
    error, channel = asyncio.run(_exchange(ctx, messages))
    assert error is not None, "closed without a word"
    assert error["code"] == code and match in error["message"], error
    assert len(error["message"]) < 300
    assert channel.closed is not None
    close_code, reason = channel.closed
    assert close_code in (P.CLOSE_POLICY, P.CLOSE_TOO_BIG) and reason
    assert len(reason.encode()) <= P.CLOSE_REASON_BYTES
    assert ctx.admission.active == 0


def test_a_failure_inside_the_server_is_answered_not_dropped(
    models: ModelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.server import session

    def broken(self: Any, wire: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(session.ServerSession, "set_controls", broken)
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=1))
    error, channel = asyncio.run(_exchange(ctx, [_hello(), P.WireControls().to_text()]))
    assert error["code"] == P.INTERNAL and "RuntimeError" in error["message"]
    assert channel.closed is not None and channel.closed[0] == P.CLOSE_ERROR
    assert ctx.admission.active == 0


def test_a_flood_of_text_messages_is_refused(models: ModelSet) -> None:
    """Time stands still (a frozen clock): the burst allowance is all a flood gets."""
    limits = ServerLimits(text_per_s=10, text_burst=20)
    ctx = ServerContext(
        models=models,
        token=TOKEN,
        admission=Admission(capacity=1),
        limits=limits,
        clock=lambda: 100.0,
    )
    flood: list[str | bytes] = [P.text("ping", t=1.0, pad="x" * 15000) for _ in range(40)]
    error, _ = asyncio.run(_exchange(ctx, [_hello(), *flood]))
    assert error is not None and error["code"] == P.TOO_FAST
    assert "faster than 10 a second" in error["message"]


def test_silent_and_idle_sessions_are_closed(models: ModelSet) -> None:
    limits = ServerLimits(hello_timeout_s=0.05, idle_timeout_s=0.05)
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=1), limits=limits)

    async def run(messages: list[str | bytes]) -> Any:
        channel = MemoryChannel()
        for m in messages:
            channel.inbox.put_nowait(m)
        await asyncio.wait_for(handle(channel, ctx), 10)  # ends by itself: nobody says bye
        texts = [json.loads(channel.outbox.get_nowait()) for _ in range(channel.outbox.qsize())]
        return texts[-1], channel.closed

    error, closed = asyncio.run(run([]))
    assert "no 'hello' within 0.05 s" in error["message"] and closed is not None
    error, closed = asyncio.run(run([_hello()]))
    assert error["code"] == P.IDLE and "no message for 0.05 s" in error["message"]
    assert ctx.admission.active == 0 and ctx.pending.count == 0


def test_shutdown_ends_sessions_with_a_reason(models: ModelSet) -> None:
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=2))

    async def run() -> Any:
        channel = MemoryChannel()
        channel.inbox.put_nowait(_hello())
        task = asyncio.create_task(handle(channel, ctx))
        ready = json.loads(await asyncio.wait_for(channel.outbox.get(), 10))
        assert ready["kind"] == "ready" and ctx.admission.active == 1
        assert ctx.live.end_all() == 1
        await asyncio.wait_for(task, 10)
        error = json.loads(await channel.outbox.get())
        late, _ = await _exchange(ctx, [_hello()])
        return error, channel.closed, late

    error, closed, late = asyncio.run(run())
    assert error["code"] == P.GOING_AWAY and "shutting down" in error["message"]
    assert closed is not None and closed[0] == P.CLOSE_GOING_AWAY
    assert late["code"] == P.GOING_AWAY  # no new session once shutting down
    assert ctx.admission.active == 0


# -- loopback: many sockets through the gate ---------------------------------------------------


@pytest.fixture
def gated(models: ModelSet) -> Iterator[tuple[InProcessServer, int]]:
    # A low text rate: the flood below is refused however slowly a loaded machine reads it.
    limits = ServerLimits(hello_timeout_s=1.0, max_pending=8, text_per_s=20, text_burst=50)
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=1), limits=limits)
    server = InProcessServer(ctx, free_port())
    server.start()
    gate_limits = GateLimits(
        max_connections=100, max_per_address=64, header_timeout_s=0.5, idle_timeout_s=5.0
    )
    port = free_port()
    gate = start_gate("127.0.0.1", port, upstream=("127.0.0.1", server.port), limits=gate_limits)
    try:
        yield server, port
    finally:
        gate.close()
        server.shutdown()


def _ws(port: int) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{port}/session", proxy=None, open_timeout=10).__enter__()


def _closed_reason(ws: ClientConnection, timeout: float) -> str:
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.reason if exc.rcvd is not None else ""


def test_silent_websockets_never_lock_out_the_real_user(
    gated: tuple[InProcessServer, int],
) -> None:
    server, port = gated
    silent = [_ws(port) for _ in range(20)]  # upgraded, then never a hello
    user = _ws(port)
    user.send(_hello())
    ready = json.loads(user.recv(timeout=10))
    assert ready["kind"] == "ready"
    user.close()
    reasons = [_closed_reason(ws, 10) for ws in silent]
    assert all(r.startswith(("server busy", "no 'hello' within 1 s")) for r in reasons), reasons
    assert sum(r.startswith("server busy") for r in reasons) >= 12  # 8 may wait
    _wait_until_left(server)


def _wait_until_left(server: InProcessServer) -> None:
    """Until the server holds no session and no connection waiting for its hello."""
    ctx = server.ctx
    deadline = time.monotonic() + 10
    while ctx.pending.count or ctx.admission.active or len(ctx.live):
        assert time.monotonic() < deadline, "the server still holds a connection"
        time.sleep(0.01)


def test_half_requests_and_idle_sockets_are_closed_and_capped(
    gated: tuple[InProcessServer, int],
) -> None:
    socks = []
    for i in range(64):
        s = socket.create_connection(("127.0.0.1", port := gated[1]), timeout=10)
        if i % 2:
            s.sendall(b"GET /session HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        socks.append(s)
    time.sleep(0)  # the gate counts them as it accepts; the extra one below may race it
    over = socket.create_connection(("127.0.0.1", port), timeout=10)
    answers = [_read_all(s) for s in [*socks, over]]
    assert all(a.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")) for a in answers), {
        a[:12] for a in answers
    }
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) >= 60
    assert answers[-1].startswith(b"HTTP/1.1 503") or answers.count(answers[-1]) > 1
    for s in [*socks, over]:
        s.close()


def _read_all(s: socket.socket) -> bytes:
    """What the server sends until it closes (bounded by the socket's timeout)."""
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


def test_memory_returns_to_baseline_after_a_flood(
    gated: tuple[InProcessServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    """One client sends 15 KB text messages as fast as it can: it is refused (the server's
    log says why; the client may be cut off mid-send, before it reads the reason), the server
    never holds more than a few MB for it, and what it held is freed when it is gone."""
    server, port = gated
    photo = encode_photo(np.full((512, 512, 3), 100, np.uint8))

    def session(flood: int) -> None:
        ws = _ws(port)
        ws.send(_hello())
        ready = json.loads(ws.recv(timeout=10))
        assert ready["kind"] == "ready", ready
        ws.send(P.text("avatar", name="grey", bytes=len(photo)))
        ws.send(P.pack_avatar(photo))
        pad = "x" * 15000
        try:
            for i in range(flood):
                ws.send(P.text("ping", t=float(i), pad=pad))
        except ConnectionClosed:
            pass
        if flood:
            _closed_reason(ws, 10)
        ws.close()
        _wait_until_left(server)

    session(0)  # warm: imports, encoder, caches
    gc.collect()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        with caplog.at_level(logging.INFO, logger="runtime.server.connection"):
            session(600)  # 9 MB of text if it were all taken, 12 times the burst allowed
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any("text messages arrive faster than" in r.getMessage() for r in caplog.records)
    assert peak - baseline < 16 * 2**20, f"peak {(peak - baseline) / 2**20:.1f} MB over baseline"
    assert current - baseline < 2 * 2**20, f"{(current - baseline) / 2**20:.1f} MB left behind"


# -- the gate alone, and the rate buckets ------------------------------------------------------


@pytest.fixture
def sink_upstream() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server that takes what it is sent and never answers."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def run() -> None:
        conns = []
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conns.append(conn)
            except TimeoutError:
                pass
            for c in conns:
                try:
                    if data := c.recv(65536):
                        received.append(data)
                except BlockingIOError:
                    pass
        for c in conns:
            c.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_the_gate_caps_all_connections_and_closes_idle_ones(
    sink_upstream: tuple[int, list[bytes]],
) -> None:
    upstream, received = sink_upstream
    port = free_port()
    limits = GateLimits(max_connections=2, max_per_address=10, idle_timeout_s=0.2)
    gate = start_gate("127.0.0.1", port, upstream=("127.0.0.1", upstream), limits=limits)
    try:
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        for s in (first, second):
            s.sendall(head)
        deadline = time.monotonic() + 10
        while gate.gate.open < 2:  # both relayed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        third = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert _read_all(third).startswith(b"HTTP/1.1 503")
        # Nothing moves either way on the first two: the idle timeout closes them.
        assert _read_all(first) == b"" and _read_all(second) == b""
        assert head in b"".join(received)
        for s in (first, second, third):
            s.close()
    finally:
        gate.close()


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=5.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] = 0.2  # two more earned
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 100.0  # never more than the burst saved up
    assert sum(bucket.take() for _ in range(10)) == 5
    assert not bucket.take(6)  # more than the burst at once never fits
