"""The render server's front door: a TCP relay in front of the Ray Serve proxy (its own asyncio
event loop, on the `serve-gate` thread `start_gate` starts; `GateHandle.close` from any thread).

Ray's HTTP proxy (uvicorn) has no header timeout and no connection cap, so strangers could hold
sockets open for ever. Every connection passes here first:
- at most `max_connections` at once, `max_per_address` from one address (more: "503 too many
  connections", closed);
- the HTTP request head must arrive whole within `header_timeout_s` and `max_header_bytes`
  ("408"/"431", closed);
- a connection with no byte either way for `idle_timeout_s` is closed;
- what a client sends is relayed at most at `upload_bytes_per_s` (beyond a burst the relay
  stops reading, so TCP holds the client back and nothing queues in the server).
What passes is relayed byte for byte (the WebSocket's own checks are the session's:
`runtime.server.connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from runtime.server.limits import TokenBucket

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class GateLimits:
    max_connections: int = 256
    max_per_address: int = 16
    header_timeout_s: float = 5.0
    max_header_bytes: int = 16 * 1024
    idle_timeout_s: float = 60.0
    upload_bytes_per_s: float = 8 * 2**20
    upload_burst_bytes: float = 32 * 2**20


def _answer(status: str, text: str) -> bytes:
    body = text.encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


class Gate:
    """Accepts on (host, port), relays to (upstream_host, upstream_port)."""

    def __init__(
        self,
        *,
        upstream: tuple[str, int],
        limits: GateLimits = GateLimits(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self.limits = limits
        self._clock = clock
        self._per_address: Counter[str] = Counter()
        self.open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def listen(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=self.limits.max_header_bytes, reuse_address=True
        )

    async def close(self) -> None:
        """Stop accepting and cut every relayed connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "?"
        limits = self.limits
        counted = False
        try:
            if self.open >= limits.max_connections:
                writer.write(_answer("503 Service Unavailable", "too many connections\n"))
                return
            if self._per_address[address] >= limits.max_per_address:
                writer.write(
                    _answer("503 Service Unavailable", "too many connections from this address\n")
                )
                return
            self.open += 1
            self._per_address[address] += 1
            counted = True
            await self._relay(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if counted:
                self.open -= 1
                self._per_address[address] -= 1
                if self._per_address[address] <= 0:
                    del self._per_address[address]
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self.limits
        try:
            async with asyncio.timeout(limits.header_timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            writer.write(_answer("408 Request Timeout", "the request head did not arrive\n"))
            return
        except asyncio.LimitOverrunError:
            writer.write(_answer("431 Request Header Fields Too Large", "request head too big\n"))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.write(_answer("502 Bad Gateway", "the render server is not up\n"))
            return
        try:
            up_writer.write(head)
            await self._pipe_both(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()

    async def _pipe_both(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        limits = self.limits
        last = [self._clock()]
        bucket = TokenBucket(limits.upload_bytes_per_s, limits.upload_burst_bytes, self._clock)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            while data := await src.read(CHUNK):
                last[0] = self._clock()
                while up and not bucket.take(len(data)):
                    await asyncio.sleep(len(data) / limits.upload_bytes_per_s)
                dst.write(data)
                await dst.drain()
                last[0] = self._clock()
            if dst.can_write_eof():
                with contextlib.suppress(OSError):
                    dst.write_eof()

        async def watchdog() -> None:
            while True:
                left = limits.idle_timeout_s - (self._clock() - last[0])
                if left <= 0:
                    return
                await asyncio.sleep(min(left, 1.0))

        tasks = [
            asyncio.create_task(pipe(reader, up_writer, True)),
            asyncio.create_task(pipe(up_reader, writer, False)),
            asyncio.create_task(watchdog()),
        ]
        try:
            # One direction ending leaves the other to finish (a close handshake goes both
            # ways); the idle watchdog or both ending stops the relay.
            pending = set(tasks)
            while tasks[2] in pending and (tasks[0] in pending or tasks[1] in pending):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class GateHandle:
    gate: Gate
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self.gate.close(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


def start_gate(
    host: str, port: int, *, upstream: tuple[str, int], limits: GateLimits = GateLimits()
) -> GateHandle:
    """A gate listening on (host, port) on its own thread; `OSError` when the port is taken."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="serve-gate", daemon=True)
    thread.start()
    gate = Gate(upstream=upstream, limits=limits)
    try:
        asyncio.run_coroutine_threadsafe(gate.listen(host, port), loop).result(10)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        raise
    return GateHandle(gate=gate, loop=loop, thread=thread)
