"""Shared pieces of the remote-compute tests: audio as wire packets, an in-memory channel, an
in-process render server."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from runtime.model.execution.sessions import ModelSet
from runtime.remote import protocol as P
from runtime.remote.codec import pcm_from_float
from runtime.server.connection import Admission, Disconnected, ServerContext, handle

TOKEN = "test-token-0123456789abcdef"


def speechlike(seconds: float, *, seed: int = 0) -> np.ndarray:
    """Bursts of tone with pauses: loud and quiet frames, so features move."""
    t = np.arange(int(seconds * P.SAMPLE_RATE)) / P.SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 1.3 * t + seed) > 0).astype(np.float32)
    return (0.4 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def audio_packets(audio: np.ndarray, *, t0: float = 100.0, seq0: int = 0) -> list[bytes]:
    """`audio` (16 kHz) as AUDIO messages, captured in real time from `t0`."""
    n = len(audio) // P.PACKET_SAMPLES
    out = []
    for i in range(n):
        chunk = audio[i * P.PACKET_SAMPLES : (i + 1) * P.PACKET_SAMPLES]
        end = t0 + (i + 1) * P.PACKET_SAMPLES / P.SAMPLE_RATE
        out.append(
            P.pack_audio(P.AudioPacket(seq=seq0 + i, capture_end=end, pcm=pcm_from_float(chunk)))
        )
    return out


class MemoryChannel:
    """Both ends of a session in one event loop: the test puts client messages in `inbox` and
    reads the server's from `outbox`."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes:
        item = await self.inbox.get()
        if item is None:
            raise Disconnected
        return item

    async def send_text(self, data: str) -> None:
        await self.outbox.put(data)

    async def send_bytes(self, data: bytes) -> None:
        await self.outbox.put(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class WebsocketsChannel:
    """`runtime.server.connection.Channel` over a `websockets` asyncio server connection: the
    server's session code without Ray (for GUI tests that need a render server in-process)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def receive(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            data: str | bytes = await self._ws.recv()
        except ConnectionClosed:
            raise Disconnected from None
        return data

    async def send_text(self, data: str) -> None:
        await self._send(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(data)

    async def _send(self, data: str | bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(data)
        except ConnectionClosed:
            raise Disconnected from None

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


class InProcessServer:
    """The render server's connection handling on a websockets server in a thread; `stop`
    drops every session and stops listening, `start` listens again on the same port."""

    def __init__(self, ctx: ServerContext, port: int) -> None:
        self.ctx, self.port = ctx, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _handler(self, ws: Any) -> None:
        await handle(WebsocketsChannel(ws), self.ctx)

    def start(self) -> None:
        from websockets.asyncio.server import serve

        async def listen() -> Any:
            return await serve(
                self._handler, "127.0.0.1", self.port, max_size=P.MAX_MESSAGE_BYTES, close_timeout=1
            )

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return

        async def close() -> None:
            server.close(close_connections=True)
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)

    def shutdown(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(models: ModelSet, *, capacity: int) -> Iterator[InProcessServer]:
    """An in-process render server of `models` (token `TOKEN`) listening on a free port until
    the block ends."""
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=capacity))
    server = InProcessServer(ctx, free_port())
    server.start()
    try:
        yield server
    finally:
        server.shutdown()
