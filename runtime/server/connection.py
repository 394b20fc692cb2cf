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
import contextlib
import logging
import os
import threading
import time
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from runtime.model.execution.sessions import ModelSet
from runtime.remote import protocol as P
from runtime.remote.codec import FrameEncoder, encode_frame
from runtime.server.limits import Pending, Rates, ServerLimits
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


class LiveSessions:
    """The connections a replica holds, so a shutdown can end each with a reason (any thread:
    `end_all` is called from the replica's event loop or a signal's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[asyncio.Task[None], asyncio.AbstractEventLoop] = {}
        self.ending = False

    def add(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks[task] = task.get_loop()

    def discard(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks.pop(task, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)

    def end_all(self) -> int:
        """Refuse new connections and end the open ones ("the server is shutting down")."""
        with self._lock:
            self.ending = True
            tasks = list(self._tasks.items())
        for task, loop in tasks:
            loop.call_soon_threadsafe(task.cancel)
        return len(tasks)


@dataclass(frozen=True, kw_only=True)
class ServerContext:
    models: ModelSet
    token: str
    admission: Admission
    on_gpu: bool = False
    clock: Callable[[], float] = time.perf_counter
    limits: ServerLimits = field(default_factory=ServerLimits)
    live: LiveSessions = field(default_factory=LiveSessions)
    pending: Pending = field(init=False)
    """Connections waiting for their hello (`limits.max_pending` at most)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pending", Pending(self.limits.max_pending))


SHUTTING_DOWN = "the server is shutting down; connect again in a moment"


async def handle(channel: Channel, ctx: ServerContext) -> None:
    """Serve one client until it leaves, sends something bad, or the server shuts down."""
    task = asyncio.current_task()
    assert task is not None
    ctx.live.add(task)
    try:
        await _handle(channel, ctx)
    except asyncio.CancelledError:
        if not ctx.live.ending:
            raise
        task.uncancel()
        await _refuse(channel, P.ProtocolError(P.GOING_AWAY, SHUTTING_DOWN), ctx.limits)
    finally:
        ctx.live.discard(task)


async def _handle(channel: Channel, ctx: ServerContext) -> None:
    session: ServerSession | None = None
    entered = False
    limits = ctx.limits
    try:
        if ctx.live.ending:
            raise P.ProtocolError(P.GOING_AWAY, SHUTTING_DOWN)
        first = await _first_message(channel, ctx)
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
        running = _Running(
            channel, session, P.FRAME_FORMATS[hello.frame_format], limits, Rates(limits, ctx.clock)
        )
        await running.send_text(
            P.text(
                "ready",
                model=ctx.models.version.name,
                source_size=ctx.models.source_size,
                pid=os.getpid(),
                capacity=ctx.admission.capacity,
            )
        )
        await running.run()
    except P.ProtocolError as exc:
        # The text, not the exception: a kept log record must not keep the session alive.
        logger.info("session refused or closed: %s (%s)", str(exc), exc.code)
        await _refuse(channel, exc, limits)
    except Disconnected:
        pass
    except Exception as exc:  # a bug or a failed graph: this session alone ends, with a word
        logger.exception("a session failed")
        internal = P.ProtocolError(
            P.INTERNAL,
            f"the server failed on this session ({type(exc).__name__}); its log has the details",
        )
        await _refuse(channel, internal, limits)
    finally:
        if session is not None:
            session.close()
        if entered:
            ctx.admission.leave()


async def _first_message(channel: Channel, ctx: ServerContext) -> str | bytes:
    """The client's first message, within the hello timeout, holding one of the replica's
    pending slots while it waits (taken away from it when newer connections need one)."""
    loop = asyncio.get_running_loop()
    evicted = asyncio.Event()
    slot = ctx.pending.enter(lambda: loop.call_soon_threadsafe(evicted.set))
    receive = asyncio.ensure_future(channel.receive())
    bumped = asyncio.ensure_future(evicted.wait())
    try:
        done, _ = await asyncio.wait(
            {receive, bumped}, timeout=ctx.limits.hello_timeout_s, return_when=FIRST_COMPLETED
        )
    finally:
        ctx.pending.leave(slot)
        for t in (receive, bumped):
            t.cancel()
        await asyncio.gather(receive, bumped, return_exceptions=True)
    if receive in done:
        return receive.result()
    if bumped in done:
        raise P.ProtocolError(
            P.SERVER_FULL,
            f"server busy: over {ctx.pending.limit} connections are waiting to authenticate; "
            "this one waited longest",
        )
    raise P.ProtocolError(P.MALFORMED, f"no 'hello' within {ctx.limits.hello_timeout_s:g} s")


async def _refuse(channel: Channel, exc: P.ProtocolError, limits: ServerLimits) -> None:
    """The `error` message, then the close with the same sentence as its reason; bounded in
    time (a client that does not read cannot hold the connection open)."""
    try:
        async with asyncio.timeout(limits.send_timeout_s):
            await channel.send_text(P.error_text(exc))
            await channel.close(exc.close_code, exc.close_reason)
    except (Disconnected, TimeoutError):
        pass


class _Running:
    def __init__(
        self,
        channel: Channel,
        session: ServerSession,
        frame_format: int,
        limits: ServerLimits,
        rates: Rates,
    ) -> None:
        self._channel, self._session = channel, session
        self._limits, self._rates = limits, rates
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

    async def send_text(self, data: str) -> None:
        async with self._send_lock, self._send_deadline():
            await self._channel.send_text(data)

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock, self._send_deadline():
            await self._channel.send_bytes(data)

    @contextlib.asynccontextmanager
    async def _send_deadline(self) -> AsyncIterator[None]:
        """A client that stops taking what it is sent is closed, not buffered for."""
        limit = self._limits.send_timeout_s
        try:
            async with asyncio.timeout(limit):
                yield
        except TimeoutError:
            raise P.ProtocolError(
                P.IDLE, f"the client took nothing it was sent for {limit:g} s; closed"
            ) from None

    async def _next(self) -> str | bytes:
        """The client's next message, within the idle timeout and the rates."""
        limit = self._limits.idle_timeout_s
        try:
            async with asyncio.timeout(limit):
                data = await self._channel.receive()
        except TimeoutError:
            raise P.ProtocolError(P.IDLE, f"no message for {limit:g} s; closed") from None
        self._rates.check(data)
        return data

    async def _receive(self) -> None:
        session = self._session
        while True:
            data = await self._next()
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
                await self.send_text(P.text("pong", t=P.parse_ping(message)))
            else:
                raise P.ProtocolError(P.MALFORMED, f"unknown message kind {P.shown(kind)}")

    async def _avatar(self, message: dict[str, object]) -> None:
        name, size = P.parse_avatar_header(message)
        data = await self._next()
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
                await self.send_text(P.text("ended"))
