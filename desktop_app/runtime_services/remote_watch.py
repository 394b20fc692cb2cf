"""Whether the render server can be reached, as the app says it (the `remote-link` thread
counts; any thread reads; one lock).

The runtime's link retries a server it cannot reach without a word while it stays
"connecting", so the window would show "Starting…" for ever. Until the engine reports the
link's attempts itself (a typed `LinkStatus` on `EventKind.REMOTE` and in `EngineStats`), this
wraps the link's connector: every failed attempt is counted, its reason put in words and the
next retry taken from the link's own backoff (`RemoteConfig.backoff_initial_s`, doubling to
`backoff_max_s`), and the GUI is woken to read `problem()`. When the engine carries that status,
`problem()` is the only thing to replace: its message while the link says it is unreachable.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from runtime.remote.client import Backoff, Connection, Connector, RemoteConfig

UNREACHABLE_STATES = frozenset({"connecting", "reconnecting"})
"""The link states (`EngineStats.remote`) in which failed attempts mean "cannot reach"."""


def failure_reason(exc: BaseException, *, timeout_s: float) -> str:
    """Why a connection attempt failed, in a few words for the user (no class names)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):  # also a server that accepts but never answers
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


class RemoteWatch:
    def __init__(
        self, config: RemoteConfig, *, connect: Connector, on_change: Callable[[], None]
    ) -> None:
        self._config = config
        self._connect = connect
        self._on_change = on_change
        self._lock = threading.Lock()
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self._attempt = 0  # failed attempts in a row
        self._reason = ""
        self._retry_in_s = 0.0

    def connect(self, url: str, timeout: float) -> Connection:
        """The link's connector (its thread): the real one, with each failure counted."""
        try:
            conn = self._connect(url, timeout)
        except Exception as exc:
            with self._lock:
                self._attempt += 1
                self._reason = failure_reason(exc, timeout_s=timeout)
                self._retry_in_s = self._backoff.next()
            self._on_change()
            raise
        with self._lock:
            self._attempt = 0
            self._backoff.reset()
        return conn

    def problem(self, link_state: str | None) -> str | None:
        """The sentence while the server cannot be reached ("cannot reach ...", or "lost ...;
        reconnecting" after it was reached), for the link's state; else None."""
        if link_state not in UNREACHABLE_STATES:
            return None
        with self._lock:
            attempt, reason, retry = self._attempt, self._reason, self._retry_in_s
        if attempt == 0:
            return None
        url, tail = self._config.url, f"(attempt {attempt}, retrying in {round(retry, 1):g} s)"
        if link_state == "reconnecting":  # it was reached before
            return f"lost the render server at {url}: {reason}; reconnecting {tail}"
        return f"cannot reach the render server at {url}: {reason} {tail}"
