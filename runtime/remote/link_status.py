"""What the link to a render server is doing, as one value (built on the `remote-link` thread,
read on any thread): its state, the failed attempts in a row, when it tries again, and all of
it in one sentence ("cannot reach the render server at ws://...: connection refused (attempt 3,
retrying in 2 s)") for a log line or a status bar.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, kw_only=True)
class LinkStatus:
    state: LinkState
    url: str
    message: str
    """In words, for a log or a status line; decide on the other fields, never on this."""
    attempt: int = 0
    """Failed connection attempts in a row (0 while connected, and before the first fails)."""
    retry_in_s: float | None = None
    """Seconds until the next attempt (None: no attempt is due: connected, failed, closed)."""
    reason: str = ""
    """Why the last attempt failed, in words ("connection refused", "no answer within 3 s")."""
    unreachable_since: float | None = None
    """When the attempts that failed in a row began (the link's clock); None while connected."""

    @property
    def unreachable(self) -> bool:
        """The server cannot be reached now: attempts are failing (never connected, or lost)."""
        return self.attempt > 0 and self.state in (LinkState.CONNECTING, LinkState.RECONNECTING)


def connect_failure(exc: BaseException, *, timeout_s: float) -> str:
    """Why a connection attempt failed, in a few words (no exception class names: this is
    shown to the user)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        # Also websockets' "timed out during opening handshake": a server that accepts the
        # connection but never answers.
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc)
    return text if text else type(exc).__name__


def _seconds(value: float) -> str:
    return f"{round(value, 1):g}"


def unreachable_message(
    *, url: str, reason: str, attempt: int, retry_in_s: float, lost: bool
) -> str:
    """The sentence for a failed attempt: before any session ("cannot reach"), or after one
    (`lost`: reconnecting)."""
    tail = f"(attempt {attempt}, retrying in {_seconds(retry_in_s)} s)"
    if lost:
        return f"lost the render server at {url}: {reason}; reconnecting {tail}"
    return f"cannot reach the render server at {url}: {reason} {tail}"


def gave_up_message(status: LinkStatus, *, waited_s: float, option: str) -> str:
    """One sentence for giving up after `waited_s` without a session (`option` changes the
    wait)."""
    if status.attempt == 0:  # the first attempt is still under way
        return (
            f"cannot reach the render server at {status.url}: no answer (gave up after "
            f"{_seconds(waited_s)} s; {option} changes the wait)"
        )
    attempts = "attempt" if status.attempt == 1 else "attempts"
    return (
        f"cannot reach the render server at {status.url}: {status.reason} (gave up after "
        f"{_seconds(waited_s)} s and {status.attempt} {attempts}; {option} changes the wait)"
    )
