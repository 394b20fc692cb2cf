"""What one connection may cost a render server: timeouts, message rates and the count of
connections not yet authenticated (the replica's event loop; `Pending` is also read by the
health endpoint, under its lock).

The numbers bound a client's cost whatever it sends: a connection that has not said a valid
`hello` within `hello_timeout_s` is closed and never counts against capacity; a session that
sends nothing for `idle_timeout_s` (the client pings every second) is closed; messages beyond
the rates below are refused, so an authenticated flood ends within a second or two instead of
queueing in the server. The burst allowances hold a whole photo (10 MB) plus audio.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from runtime.remote import protocol as P


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    hello_timeout_s: float = P.HELLO_TIMEOUT_S
    idle_timeout_s: float = P.IDLE_TIMEOUT_S
    send_timeout_s: float = 10.0
    """A client that takes nothing it is sent for this long is closed."""
    max_pending: int = 64
    """Connections of one replica still waiting for their `hello`; a newcomer beyond it closes
    the one that has waited longest."""
    messages_per_s: float = 400.0
    """All messages (audio is 50 a second, webcam crops up to 60, controls as they change)."""
    message_burst: float = 800.0
    text_per_s: float = 100.0
    """Text messages (controls, pings, format switches, avatars)."""
    text_burst: float = 200.0
    bytes_per_s: float = 8 * 2**20
    byte_burst: float = 3 * P.MAX_PHOTO_BYTES


class TokenBucket:
    """`rate` units a second, at most `burst` saved up; `take` says whether `n` fit."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._level = burst
        self._at = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self._clock()
        self._level = min(self._burst, self._level + (now - self._at) * self._rate)
        self._at = now
        if n > self._level:
            return False
        self._level -= n
        return True


class Rates:
    """One session's three buckets; `check` refuses a message over any of them."""

    def __init__(self, limits: ServerLimits, clock: Callable[[], float]) -> None:
        self._limits = limits
        self._messages = TokenBucket(limits.messages_per_s, limits.message_burst, clock)
        self._texts = TokenBucket(limits.text_per_s, limits.text_burst, clock)
        self._bytes = TokenBucket(limits.bytes_per_s, limits.byte_burst, clock)

    def check(self, data: str | bytes) -> None:
        limits = self._limits
        if not self._messages.take():
            raise P.ProtocolError(
                P.TOO_FAST,
                f"messages arrive faster than {limits.messages_per_s:.0f} a second; refused",
            )
        if isinstance(data, str) and not self._texts.take():
            raise P.ProtocolError(
                P.TOO_FAST,
                f"text messages arrive faster than {limits.text_per_s:.0f} a second; refused",
            )
        if not self._bytes.take(len(data)):
            raise P.ProtocolError(
                P.TOO_FAST,
                f"data arrives faster than {limits.bytes_per_s / 2**20:.0f} MB a second; refused",
            )


class Pending:
    """Connections waiting for their `hello`, at most `limit`: a newcomer past it evicts the
    one that has waited longest (a real client says hello within milliseconds of connecting,
    so a crowd of silent sockets can neither queue ahead of it nor lock it out)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._slots: OrderedDict[int, Callable[[], object]] = OrderedDict()
        self._next = 0

    def enter(self, evict: Callable[[], object]) -> int:
        """A slot id; `evict` is called (from this call) if the slot is later taken away."""
        with self._lock:
            evicted = []
            while len(self._slots) >= self.limit:
                evicted.append(self._slots.popitem(last=False)[1])
            slot, self._next = self._next, self._next + 1
            self._slots[slot] = evict
        for call in evicted:
            call()
        return slot

    def leave(self, slot: int) -> None:
        with self._lock:
            self._slots.pop(slot, None)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._slots)
