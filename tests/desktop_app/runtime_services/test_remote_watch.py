"""The app's count of failed attempts to reach a render server: the reason in words, the
attempt number and the next retry as the link's own backoff makes it (doubling, capped, back
to the start once a connection is made). The connector is a stand-in for the network."""

from __future__ import annotations

import socket

import pytest

from desktop_app.runtime_services.remote_watch import RemoteWatch, failure_reason
from runtime.remote.client import Connection, RemoteConfig

URL = "ws://127.0.0.1:9"


class Network:
    """Connection attempts fail with `error` until it is None; counts the wake-ups."""

    def __init__(self) -> None:
        self.error: BaseException | None = ConnectionRefusedError(111, "Connection refused")
        self.woken = 0

    def connect(self, url: str, timeout: float) -> Connection:
        if self.error is not None:
            raise self.error
        return object()  # type: ignore[return-value]

    def wake(self) -> None:
        self.woken += 1


def attempt(watch: RemoteWatch) -> None:
    with pytest.raises(OSError):  # the link still sees the failure and retries itself
        watch.connect(URL + "/session", 3.0)


def test_attempts_are_counted_with_the_links_backoff_and_reset_on_connecting() -> None:
    net = Network()
    watch = RemoteWatch(RemoteConfig(url=URL, token="t"), connect=net.connect, on_change=net.wake)
    assert watch.problem("connecting") is None  # nothing has failed yet
    said = []
    for _ in range(4):
        attempt(watch)
        said.append(watch.problem("connecting"))
    assert said == [
        f"cannot reach the render server at {URL}: connection refused "
        f"(attempt {n}, retrying in {s} s)"
        for n, s in ((1, "0.1"), (2, "0.2"), (3, "0.4"), (4, "0.5"))
    ]
    assert net.woken == 4
    assert watch.problem("connected") is None

    net.error = None
    watch.connect(URL + "/session", 3.0)
    assert watch.problem("reconnecting") is None
    net.error = ConnectionResetError(104, "Connection reset by peer")
    attempt(watch)
    assert watch.problem("reconnecting") == (
        f"lost the render server at {URL}: connection reset; reconnecting "
        "(attempt 1, retrying in 0.1 s)"
    )


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (TimeoutError("timed out during opening handshake"), "no answer within 3 s"),
        (socket.gaierror(-2, "Name or service not known"), "unknown host"),
        (OSError(113, "No route to host"), "no route to host"),
        (RuntimeError("odd"), "odd"),
    ],
)
def test_reasons_in_words(error: BaseException, words: str) -> None:
    assert failure_reason(error, timeout_s=3.0) == words
