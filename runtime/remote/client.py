"""The client's link to a render server (the `remote-link` thread; `send_audio`, `set_avatar`,
`set_controls`, `end` from the engine's worker or any thread).

The link connects, says hello (with the token), sends the avatar and controls, then receives
frames and per-hop reports while the worker sends audio. Once a second it pings, so the round
trip is measured apart from the server's compute (which every hop reports). When the
connection drops it reports "reconnecting", keeps retrying with a short capped backoff (so a
server that is back is found within half a second), and on success sends the same avatar and
controls again: the session resumes where the audio is. Every failed attempt is reported
(`LinkStatus`: the attempt count, the reason in words, the next retry) from the first one on,
so a server that cannot be reached says so at once instead of "connecting" for ever. With
`--frame-format auto` it measures what the link delivers (`runtime.remote.bandwidth`) and asks
the server to switch between JPEG and H.264 mid-session; the format chosen carries over to a
new connection. A wrong token, or input the server refuses, ends the link (no retry); "server
full" before any session was served ends it too, after one the link keeps trying.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock, wait_on
from runtime.remote import protocol as P
from runtime.remote.bandwidth import ChooserConfig, FormatChooser, LinkMeter, LinkReading
from runtime.remote.codec import FrameDecoder
from runtime.remote.link_status import LinkState, LinkStatus, connect_failure, unreachable_message

logger = logging.getLogger(__name__)

Image8 = npt.NDArray[np.uint8]

FATAL_CODES = frozenset(
    {P.BAD_TOKEN, P.TOO_LARGE, P.BAD_AUDIO, P.BAD_PHOTO, P.MALFORMED, P.TOO_FAST}
)


class LinkRefused(RuntimeError):
    """The link ended for good: the server refused the session, or sent what this client
    cannot read. `str()` is one sentence for the user (no traceback: nothing is broken here)."""


class ServerRefusal(P.ProtocolError):
    """An `error` the server sent (not something this end found wrong with its data)."""


class Connection(Protocol):
    """What the link needs of a WebSocket (websockets' sync client connection)."""

    def send(self, message: str | bytes) -> None: ...

    def recv(self, timeout: float | None = None) -> str | bytes: ...

    def close(self) -> None: ...


Connector = Callable[[str, float], Connection]


def websocket_connect(url: str, timeout: float) -> Connection:
    from websockets.sync.client import connect

    # Entered as a context manager: a bare connection is deprecated (websockets 17.1); the
    # link closes it itself.
    conn: Connection = connect(
        url,
        open_timeout=timeout,
        max_size=P.MAX_MESSAGE_BYTES,
        compression=None,
        proxy=None,
        close_timeout=1.0,
    ).__enter__()
    return conn


@dataclass(frozen=True, kw_only=True)
class RemoteConfig:
    url: str
    token: str
    frame_format: str = "auto"
    """jpeg, h264, raw (never changed), or auto: to start, JPEG to this machine or a private
    network address (plenty of bandwidth, and cheaper to code), H.264 (a thirtieth of the
    bytes) to anywhere else; then as the measured bandwidth calls for."""
    connect_timeout_s: float = 3.0
    """Seconds one attempt may take: the TCP connection and the WebSocket handshake (a server
    that accepts but never answers fails the attempt after this), then the server's 'ready'."""
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 0.5
    """Between attempts to get a lost server back (found within half a second once it is)."""
    connect_backoff_max_s: float = 2.0
    """Between attempts before any session was served: a server that is not there yet is
    retried less often (every attempt is reported, so this also paces the reports)."""
    ping_interval_s: float = 1.0
    choose_interval_s: float = 0.5
    """How often `auto` reconsiders the format."""
    chooser: ChooserConfig | None = None
    """`auto`'s thresholds (None: the defaults at the session's frame rate)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"the remote server must be a ws:// or wss:// URL, not {self.url!r}")
        if self.frame_format != "auto" and self.frame_format not in P.FRAME_FORMATS:
            raise ValueError(f"frame format must be one of {sorted(P.FRAME_FORMATS)}")

    @property
    def wire_format(self) -> str:
        """The frame format to ask the server for first (`auto` resolved by the address)."""
        if self.frame_format != "auto":
            return self.frame_format
        host = urlsplit(self.url).hostname or ""
        try:
            near = ipaddress.ip_address(host).is_private or ipaddress.ip_address(host).is_loopback
        except ValueError:
            near = host == "localhost" or host.endswith((".local", ".lan"))
        return "jpeg" if near else "h264"

    @property
    def session_url(self) -> str:
        """The URL with the session path when none was given."""
        rest = self.url.split("://", 1)[1]
        return self.url if "/" in rest else self.url.rstrip("/") + "/session"


class Backoff:
    """Delays between connection attempts: doubling from `initial`, capped at `cap`."""

    def __init__(self, initial: float, cap: float) -> None:
        self._initial, self._cap = initial, cap
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self._initial


@dataclass(frozen=True, kw_only=True)
class LinkCallbacks:
    """All called on the link thread; they must not block."""

    on_frame: Callable[[P.FrameHeader, Image8, float], None]
    """(header, RGB image, arrival time on the link's clock); index -1 is the idle picture."""
    on_state: Callable[[LinkStatus], None]
    """Every change of state, and every failed attempt (with its count and the next retry)."""
    on_rtt: Callable[[float], None] = lambda seconds: None
    on_ended: Callable[[], None] = lambda: None
    on_connected: Callable[[int], None] = lambda generation: None
    """A session (re)started: `generation` counts connections (the worker resends context)."""


class RemoteLink:
    def __init__(
        self,
        config: RemoteConfig,
        callbacks: LinkCallbacks,
        *,
        hello: Callable[[], P.Hello],
        connect: Connector = websocket_connect,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.config = config
        self._cb = callbacks
        self._hello = hello
        self._connect = connect
        self._clock = clock
        self._stop = threading.Event()
        self._attempting = threading.Event()  # the link thread is inside `connect`
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._conn: Connection | None = None
        self._avatar: tuple[bytes, str] | None = None
        self._controls = P.WireControls()
        self._state = LinkState.CONNECTING
        self._status = LinkStatus(
            state=LinkState.CONNECTING, url=config.url, message=f"connecting to {config.url}"
        )
        self._served = False  # a session was established at least once
        self._generation = 0
        self._seq = 0
        self._crop_seq = 0
        self._thread: threading.Thread | None = None
        self.error: str = ""
        self._decoder = FrameDecoder()
        self.server: dict[str, Any] = {}
        self._chooser: FormatChooser | None = None  # `auto` only, made at the first hello
        self._meter: LinkMeter | None = None
        self.reading: LinkReading | None = None
        """The link's latest measurement (replaced whole: read it from any thread)."""

    def stats(self) -> dict[str, Any]:
        """`EngineStats`' link fields: the frame format in use, the frames received and the
        link's measured capacity (Mbit/s; NaN until measured)."""
        reading = self.reading
        capacity = None if reading is None else reading.capacity_bps
        return {
            "frame_format": self.frame_format,
            "link_mbps": math.nan if reading is None else reading.received_bps / 1e6,
            "link_capacity_mbps": math.nan if capacity is None else capacity / 1e6,
        }

    @property
    def frame_format(self) -> str:
        """The frame format in use (or asked for)."""
        chooser = self._chooser
        return self.config.wire_format if chooser is None else chooser.format

    # -- any thread ---------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def status(self) -> LinkStatus:
        """The state with the failed attempts and the next retry (replaced whole)."""
        return self._status

    @property
    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="remote-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """True when the link thread has ended, or is only blocked in a connection attempt
        (a server that never answers holds it up to `connect_timeout_s`, which nothing can
        cut short): it then closes that connection and ends by itself, sending nothing."""
        self._stop.set()
        self._drop()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            deadline = time.monotonic() + timeout
            while thread.is_alive() and not self._attempting.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                thread.join(min(left, 0.02))
        return True

    def set_avatar(self, photo: bytes, name: str) -> None:
        if len(photo) > P.MAX_PHOTO_BYTES:
            raise ValueError(
                f"the avatar photo is {len(photo) / 2**20:.1f} MB; the server takes at most "
                f"{P.MAX_PHOTO_BYTES // 2**20} MB"
            )
        with self._lock:
            self._avatar = (photo, name)
        self._send_now(P.text("avatar", name=name, bytes=len(photo)), P.pack_avatar(photo))

    def set_controls(self, controls: P.WireControls) -> None:
        with self._lock:
            self._controls = controls
        self._send_now(controls.to_text())

    def send_audio(self, pcm: bytes, capture_end: float, generation: int) -> bool:
        """Send one 20 ms packet on connection `generation`; False when that connection is not
        up (the audio is then dropped: the worker resends context on the next one)."""
        with self._lock:
            if self._generation != generation or self._state is not LinkState.CONNECTED:
                return False
            seq = self._seq
            self._seq += 1
        return self._send_now(
            P.pack_audio(P.AudioPacket(seq=seq, capture_end=capture_end, pcm=pcm))
        )

    def send_crop(self, jpeg: bytes, index: int, capture: float, generation: int) -> bool:
        """Webcam mode: send one face crop (the motion encoder's input) for output frame
        `index`; False when connection `generation` is not up (the crop is dropped)."""
        with self._lock:
            if self._generation != generation or self._state is not LinkState.CONNECTED:
                return False
            seq = self._crop_seq
            self._crop_seq += 1
        packet = P.CropPacket(seq=seq, index=index, capture=capture, jpeg=jpeg)
        return self._send_now(P.pack_crop(packet))

    def end(self) -> None:
        self._send_now(P.text("end"))

    def _send_now(self, *messages: str | bytes) -> bool:
        conn = self._conn
        if conn is None or self._state is not LinkState.CONNECTED:
            return False
        try:
            with self._send_lock:
                for m in messages:
                    conn.send(m)
            return True
        except Exception as exc:  # the receive side notices and reconnects
            logger.debug("send failed: %s", exc)
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("closing the connection failed", exc_info=True)

    def _set_state(self, state: LinkState, message: str) -> None:
        if state is self._state and state is not LinkState.CONNECTED:
            return
        self._report(LinkStatus(state=state, url=self.config.url, message=message))

    def _report(self, status: LinkStatus) -> None:
        self._state, self._status = status.state, status
        try:
            self._cb.on_state(status)
        except Exception:
            logger.exception("link state listener failed")

    # -- the link thread -----------------------------------------------------------------------

    def _run(self) -> None:
        cfg = self.config
        again = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s)
        first = Backoff(cfg.backoff_initial_s, cfg.connect_backoff_max_s)
        attempt = 0
        since: float | None = None
        while not self._stop.is_set():
            started = self._clock()
            generation = self._generation
            try:
                self._session(again)
            except P.ProtocolError as exc:
                if exc.code in FATAL_CODES or (exc.code == P.SERVER_FULL and not self._served):
                    self.error = _refusal(exc)
                    self._set_state(LinkState.FAILED, self.error)
                    self._drop()
                    return
                reason = str(exc)
            except Exception as exc:  # connection refused, reset, timed out
                reason = connect_failure(exc, timeout_s=cfg.connect_timeout_s)
            finally:
                self._drop()
            if self._stop.is_set():
                break
            if self._generation != generation:  # a session ran: its end starts a new count
                attempt, since = 0, self._clock()
            attempt += 1
            since = started if since is None else since
            lost = self._served
            delay = (again if lost else first).next()
            state = LinkState.RECONNECTING if lost else LinkState.CONNECTING
            message = unreachable_message(
                url=cfg.url, reason=reason, attempt=attempt, retry_in_s=delay, lost=lost
            )
            logger.debug("%s", message)
            self._report(
                LinkStatus(
                    state=state,
                    url=cfg.url,
                    message=message,
                    attempt=attempt,
                    retry_in_s=delay,
                    reason=reason,
                    unreachable_since=since,
                )
            )
            wait_on(self._stop, delay, self._clock)
        self._set_state(LinkState.CLOSED, "closed")

    def _session(self, backoff: Backoff) -> None:
        self._attempting.set()
        try:
            conn = self._connect(self.config.session_url, self.config.connect_timeout_s)
        finally:
            self._attempting.clear()
        if self._stop.is_set():  # stopped while the attempt was under way
            conn.close()
            return
        self._conn = conn
        hello = self._hello()
        if self._meter is None:
            chooser_cfg = self.config.chooser or ChooserConfig(fps=hello.fps)
            if self.config.frame_format == "auto":
                self._chooser = FormatChooser(hello.frame_format, chooser_cfg, now=self._clock())
                self._meter = self._chooser.meter
            else:
                self._meter = LinkMeter(chooser_cfg)
        self._meter.restart()
        if self._chooser is not None:
            hello = dataclasses.replace(hello, frame_format=self._chooser.format)
        conn.send(hello.to_text())
        ready = self._expect_text(conn, self.config.connect_timeout_s)
        if ready.get("kind") != "ready":
            raise P.ProtocolError(P.MALFORMED, f"the server answered {ready.get('kind')!r}")
        self.server = ready
        self._decoder = FrameDecoder()  # a new session starts a new stream
        with self._lock:
            avatar, controls = self._avatar, self._controls
            self._seq = self._crop_seq = 0
            self._generation += 1
            generation = self._generation
        if avatar is not None:
            photo, name = avatar
            conn.send(P.text("avatar", name=name, bytes=len(photo)))
            conn.send(P.pack_avatar(photo))
        conn.send(controls.to_text())
        self._served = True
        backoff.reset()
        self._set_state(LinkState.CONNECTED, f"connected to {self.config.url}")
        self._cb.on_connected(generation)
        next_ping = next_choice = ready_at = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_ping:
                next_ping = now + self.config.ping_interval_s
                with self._send_lock:
                    conn.send(P.text("ping", t=now))
            if now >= next_choice:
                next_choice = now + self.config.choose_interval_s
                self._choose(conn, now)
            try:
                data = conn.recv(timeout=min(0.1, max(0.0, min(next_ping, next_choice) - now)))
            except TimeoutError:
                continue
            self._dispatch(data, ready_at)
            ready_at = self._clock()

    def _choose(self, conn: Connection, now: float) -> None:
        meter, chooser = self._meter, self._chooser
        if meter is None:
            return
        fmt = None if chooser is None else chooser.decide(now)
        self.reading = meter.reading(now)
        if fmt is not None:
            with self._send_lock:
                conn.send(P.frame_format_text(fmt))

    def _expect_text(self, conn: Connection, timeout: float) -> dict[str, Any]:
        data = conn.recv(timeout=timeout)
        if not isinstance(data, str):
            raise P.ProtocolError(P.MALFORMED, "the server sent binary data before 'ready'")
        message = P.parse_text(data)
        if message["kind"] == "error":
            raise _server_error(message)
        return message

    def _dispatch(self, data: str | bytes, ready_at: float | None = None) -> None:
        """`ready_at`: when the link began waiting for this message."""
        arrival = self._clock()
        if isinstance(data, bytes):
            header, payload = P.unpack_frame(data)
            if self._meter is not None:
                waited = None if ready_at is None else arrival - ready_at
                self._meter.on_frame(header, len(payload), arrival, waited)
            image = self._decoder.decode(header, payload)
            if image is not None:
                self._cb.on_frame(header, image, arrival)
            return
        message = P.parse_text(data)
        kind = message["kind"]
        if kind == "pong":
            sent = message.get("t")
            if isinstance(sent, int | float):
                if self._meter is not None:
                    self._meter.on_rtt(arrival - float(sent))
                self._cb.on_rtt(arrival - float(sent))
        elif kind == "ended":
            self._cb.on_ended()
        elif kind == "error":
            raise _server_error(message)


def _server_error(message: dict[str, Any]) -> P.ProtocolError:
    code = str(message.get("code", P.INTERNAL))
    text = message.get("message")
    if not isinstance(text, str) or not text:
        text = "the server refused the session"
    return ServerRefusal(code[:40], P.close_reason(text))


def _refusal(exc: P.ProtocolError) -> str:
    """The one sentence the user sees when the link ends for good."""
    if isinstance(exc, ServerRefusal):
        return f"the render server refused the session: {exc}"
    return f"the render server sent what this client cannot read: {exc}"
