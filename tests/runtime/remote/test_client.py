"""The client's link to a render server, in virtual time: capped backoff, "reconnecting" on a
drop, and the same avatar and controls sent again as soon as the server is back (well within
2 s). The connection is a fake (it stands for the network); the link is the real one."""

from __future__ import annotations

import json
import threading
from collections import deque

import numpy as np
import pytest

from runtime.remote import protocol as P
from runtime.remote.client import Backoff, LinkCallbacks, LinkState, RemoteConfig, RemoteLink
from runtime.remote.codec import encode_frame
from tests.support.virtual_clock import VirtualClock

TOKEN = "test-token-0123456789abcdef"


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    b = Backoff(0.1, 0.5)
    assert [b.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    b.reset()
    assert b.next() == 0.1


def test_config_checks_the_url() -> None:
    with pytest.raises(ValueError, match="ws://"):
        RemoteConfig(url="http://example.com", token=TOKEN)
    assert RemoteConfig(url="ws://h:1", token=TOKEN).session_url == "ws://h:1/session"
    assert RemoteConfig(url="wss://h/x/session", token=TOKEN).session_url == "wss://h/x/session"


class FakeConnection:
    """A server on the other end of a socket: answers hello with ready, then one frame; drops
    when `drop` is set. Waits on the virtual clock."""

    def __init__(self, clock: VirtualClock, ready: dict[str, object]) -> None:
        self.clock = clock
        self.sent: list[str | bytes] = []
        self.inbox: deque[str | bytes] = deque()
        self.drop = threading.Event()
        self.closed = False
        self._ready = ready

    def send(self, message: str | bytes) -> None:
        if self.drop.is_set() or self.closed:
            raise ConnectionResetError("gone")
        self.sent.append(message)
        if isinstance(message, str):
            kind = json.loads(message)["kind"]
            if kind == "hello":
                self.inbox.append(json.dumps(self._ready))
            elif kind == "controls":
                image = np.full((8, 8, 3), 7, np.uint8)
                header = P.FrameHeader(
                    index=3, capture=1.0, compute_s=0.01, width=8, height=8, format=P.FORMAT_RAW
                )
                self.inbox.append(P.pack_frame(header, encode_frame(image, P.FORMAT_RAW)))

    def recv(self, timeout: float | None = None) -> str | bytes:
        if self.inbox:
            return self.inbox.popleft()
        if self.clock.wait(self.drop, 0.1 if timeout is None else timeout):
            raise ConnectionResetError("connection lost")
        raise TimeoutError

    def close(self) -> None:
        self.closed = True

    def kinds(self) -> list[str]:
        return [json.loads(m)["kind"] if isinstance(m, str) else "binary" for m in self.sent]


def test_a_dropped_connection_resumes_with_the_same_avatar_and_controls() -> None:
    clock = VirtualClock(start=1000.0)
    back_at = 1013.3  # the server is down from the drop until here
    connections: list[FakeConnection] = []
    attempts: list[float] = []
    states: list[tuple[float, LinkState]] = []
    frames: list[tuple[float, int]] = []

    def connect(url: str, timeout: float) -> FakeConnection:
        attempts.append(clock())
        if connections and clock() < back_at:
            raise ConnectionRefusedError("refused")
        conn = FakeConnection(clock, {"kind": "ready", "pid": 1})
        connections.append(conn)
        return conn

    link = RemoteLink(
        RemoteConfig(url="ws://127.0.0.1:1", token=TOKEN),
        LinkCallbacks(
            on_frame=lambda h, image, t: frames.append((t, h.index)),
            on_state=lambda st: states.append((clock(), st.state)),
        ),
        hello=lambda: P.Hello(token=TOKEN),
        connect=connect,
        clock=clock,
    )
    photo = b"\x89PNG fake photo"
    link.set_avatar(photo, "me")
    controls = P.WireControls(pose=(5.0, 0.0, 0.0), nfe=4, hop=2)
    link.set_controls(controls)
    clock.join()  # first: time must not run ahead while the link starts
    with clock.adopting():
        link.start()
    clock.sleep(10.0)
    assert [s for _, s in states] == [LinkState.CONNECTED]
    connections[0].drop.set()
    clock.sleep(back_at - clock() + 3.0)
    link.stop()
    clock.leave()

    # Each failed attempt is reported; the states in turn:
    seen = [s for i, (_, s) in enumerate(states) if i == 0 or states[i - 1][1] is not s]
    assert seen[:3] == [LinkState.CONNECTED, LinkState.RECONNECTING, LinkState.CONNECTED]
    reconnected = next(t for t, s in states[1:] if s is LinkState.CONNECTED)
    # Capped backoff: found at most one cap (0.5 s) after the server is back.
    assert back_at <= reconnected <= back_at + 0.5
    gaps = np.diff([t for t in attempts if t > 1010.0])
    assert gaps.max() <= 0.5 + 1e-9
    second = connections[1]
    assert second.kinds()[:4] == ["hello", "avatar", "binary", "controls"]
    assert second.sent[2] == P.pack_avatar(photo)
    assert P.parse_controls(json.loads(second.sent[3])) == controls  # type: ignore[arg-type]
    assert len(frames) == 2 and frames[1][0] >= reconnected


def test_a_wrong_token_fails_without_retrying() -> None:
    clock = VirtualClock(start=0.0)
    attempts = []

    class Refusing(FakeConnection):
        def send(self, message: str | bytes) -> None:
            self.inbox.append(P.text("error", code=P.BAD_TOKEN, message="wrong or missing token"))

    def connect(url: str, timeout: float) -> FakeConnection:
        attempts.append(clock())
        return Refusing(clock, {})

    states: list[LinkState] = []
    link = RemoteLink(
        RemoteConfig(url="ws://127.0.0.1:1", token=TOKEN),
        LinkCallbacks(on_frame=lambda *a: None, on_state=lambda st: states.append(st.state)),
        hello=lambda: P.Hello(token=TOKEN),
        connect=connect,
        clock=clock,
    )
    clock.join()  # first: time must not run ahead while the link starts
    with clock.adopting():
        link.start()
    clock.sleep(5.0)
    link.stop()
    clock.leave()
    assert states == [LinkState.FAILED] and len(attempts) == 1
    assert link.error == "the render server refused the session: wrong or missing token"
