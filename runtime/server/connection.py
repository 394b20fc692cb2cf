"""One WebSocket session on a render replica (the replica's asyncio event loop; compute on a
worker thread through `asyncio.to_thread`).

Transport-agnostic: `Channel` is what the Ray Serve ingress (a Starlette WebSocket) or a test
offers. The first message must be a `hello` with the right token; then admission (capacity);
then a receiver task (audio, controls, avatar, end, ping) and a compute task (hops -> frames)
run side by side. Anything bad from the client is answered with one `error` message naming
it, and this session alone is closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from runtime.model.execution.sessions import ModelSet
from runtime.remote import protocol as P
from runtime.remote.codec import FrameEncoder, encode_frame
from runtime.server.session import ServerSession
from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)


class Disconnected(Exception):
    """The client went away."""


class Channel(Protocol):
    async def receive(self) -> str | bytes:
        """The next message; `Disconnected` when the client closed."""
        ...

    async def send_text(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class Admission:
    """How many sessions this replica serves at once; more are answered "server full"."""

    capacity: int
    active: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def try_enter(self) -> bool:
        with self._lock:
            if self.active >= self.capacity:
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)


@dataclass(frozen=True, kw_only=True)
class ServerContext:
    models: ModelSet
    token: str
    admission: Admission
    on_gpu: bool = False
    clock: Callable[[], float] = time.perf_counter


async def handle(channel: Channel, ctx: ServerContext) -> None:
    """Serve one client until it leaves or sends something bad."""
    session: ServerSession | None = None
    entered = False
    try:
        try:
            first = await asyncio.wait_for(channel.receive(), P.HELLO_TIMEOUT_S)
        except TimeoutError:
            raise P.ProtocolError(P.MALFORMED, "no 'hello' within 5 s") from None
        if not isinstance(first, str):
            raise P.ProtocolError(P.MALFORMED, "the first message must be a 'hello' text")
        hello = P.parse_hello(P.parse_text(first), ctx.token)
        entered = ctx.admission.try_enter()
        if not entered:
            raise P.ProtocolError(
                P.SERVER_FULL,
                f"server full: this replica serves {ctx.admission.capacity} sessions at once; "
                "try again later",
            )
        session = ServerSession(models=ctx.models, hello=hello, clock=ctx.clock, on_gpu=ctx.on_gpu)
        await channel.send_text(
            P.text(
                "ready",
                model=ctx.models.version.name,
                source_size=ctx.models.source_size,
                pid=os.getpid(),
                capacity=ctx.admission.capacity,
            )
        )
        await _Running(channel, session, P.FRAME_FORMATS[hello.frame_format]).run()
    except P.ProtocolError as exc:
        logger.info("session refused or closed: %s (%s)", exc, exc.code)
        try:
            await channel.send_text(P.error_text(exc))
            await channel.close(exc.close_code, str(exc)[:120])
        except Disconnected:
            pass
    except Disconnected:
        pass
    finally:
        if session is not None:
            session.close()
        if entered:
            ctx.admission.leave()


class _Running:
    def __init__(self, channel: Channel, session: ServerSession, frame_format: int) -> None:
        self._channel, self._session = channel, session
        self._compute = threading.Lock()  # avatar encoding and hops share the renderer
        self._set_format(frame_format)
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()

    def _set_format(self, frame_format: int) -> None:
        """From the next hop on (under the compute lock: a hop's frames are one format); a new
        encoder, so an H.264 stream starts anew with a keyframe."""
        with self._compute:
            self._format = frame_format
            self._encoder = FrameEncoder(frame_format)
            # The idle picture is never part of an H.264 stream (it would be out of order).
            self._still_format = P.FORMAT_JPEG if frame_format == P.FORMAT_H264 else frame_format

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._receive(), name="session-receive"),
            asyncio.create_task(self._produce(), name="session-compute"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_text(self, data: str) -> None:
        async with self._send_lock:
            await self._channel.send_text(data)

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            await self._channel.send_bytes(data)

    async def _receive(self) -> None:
        session = self._session
        while True:
            data = await self._channel.receive()
            if isinstance(data, bytes):
                kind = P.binary_kind(data)
                if kind == P.AUDIO:
                    session.add_audio(P.unpack_audio(data))
                elif kind == P.CROP:
                    session.add_crop(P.unpack_crop(data))
                else:
                    raise P.ProtocolError(P.MALFORMED, "unexpected binary message")
                self._wake.set()
                continue
            message = P.parse_text(data)
            kind = message["kind"]
            if kind == "avatar":
                await self._avatar(message)
            elif kind == "controls":
                session.set_controls(P.parse_controls(message))
            elif kind == "frame_format":
                fmt = P.FRAME_FORMATS[P.parse_frame_format(message)]
                if fmt != self._format:
                    await asyncio.to_thread(self._set_format, fmt)
            elif kind == "end":
                session.finish()
                self._wake.set()
            elif kind == "ping":
                await self._send_text(P.text("pong", t=message.get("t")))
            else:
                raise P.ProtocolError(P.MALFORMED, f"unknown message kind {kind!r}")

    async def _avatar(self, message: dict[str, object]) -> None:
        name, size = P.parse_avatar_header(message)
        data = await self._channel.receive()
        if not isinstance(data, bytes):
            raise P.ProtocolError(P.MALFORMED, "the announced photo did not follow")
        photo = P.unpack_avatar(data, size)

        def encode() -> bytes:
            with self._compute:
                idle = self._session.set_avatar(photo, name)
            h, w = idle.shape[:2]
            header = P.FrameHeader(
                index=-1,
                capture=float("nan"),
                compute_s=0.0,
                width=w,
                height=h,
                format=self._still_format,
            )
            return P.pack_frame(header, encode_frame(idle, self._still_format))

        await self._send_bytes(await asyncio.to_thread(encode))
        self._wake.set()

    def _step(self) -> list[bytes] | None:
        with self._compute:
            out = self._session.step()
            if out is None:
                return None
            n = len(out.frames)  # packed in the lock: an H.264 stream is one sequence
            return [self._pack(f, out.compute_s, n, i == 0) for i, f in enumerate(out.frames)]

    def _pack(self, frame: LiveFrame, compute_s: float, hop_frames: int, first: bool) -> bytes:
        h, w = frame.image.shape[:2]
        header = P.FrameHeader(
            index=frame.index,
            capture=frame.timing.capture,
            compute_s=compute_s,
            width=w,
            height=h,
            format=self._format,
            hop_frames=hop_frames,
            first_in_hop=first,
        )
        return P.pack_frame(header, self._encoder.encode(frame.image))

    async def _produce(self) -> None:
        session = self._session
        ended_sent = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                frames = await asyncio.to_thread(self._step)
                if frames is None:
                    break
                for data in frames:
                    await self._send_bytes(data)
            if session.done and not ended_sent:
                ended_sent = True
                await self._send_text(P.text("ended"))
