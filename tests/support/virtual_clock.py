"""A virtual-time scheduler for threaded timing code (any thread).

`VirtualClock()` is a clock (`clock()` -> seconds) whose time moves only when every thread that
waits on it is waiting: then it jumps to the earliest deadline. Code under test waits through
`runtime.core.timing.wait_on(event, timeout, clock)`, which calls `clock.wait`. Real compute
takes no virtual time (a stub makes it take some with `clock.sleep`), so a test of pacing,
latency or rates gives the same answer on an idle machine and on one under load; real time only
bounds how long the test may take (`real_timeout_s`).

A thread takes part from its first wait until it ends; inside `with clock.adopting():` every
thread started takes part from its start (so time does not run ahead while it sets up). A
thread that blocks on something else (a lock, a join) holds the clock still meanwhile, as a
running thread does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Container, Iterator
from contextlib import contextmanager
from typing import Any


class VirtualClockTimeout(AssertionError):
    """The virtual clock did not reach a deadline within the real-time bound."""


class VirtualClock:
    def __init__(self, start: float = 1000.0, *, real_timeout_s: float = 120.0) -> None:
        self._now = start
        self._cond = threading.Condition()
        # thread -> (deadline, event) while it waits, None while it runs
        self._threads: dict[threading.Thread, tuple[float, threading.Event] | None] = {}
        self._real_timeout = real_timeout_s
        self.advances = 0

    def __call__(self) -> float:
        with self._cond:
            return self._now

    def join(self) -> None:
        """Take part from now on (a thread that only reads the clock does not hold it)."""
        with self._cond:
            self._threads.setdefault(threading.current_thread(), None)

    def leave(self) -> None:
        """Stop taking part (before blocking on something else, e.g. joining the threads)."""
        with self._cond:
            self._threads.pop(threading.current_thread(), None)
            self._advance_locked()

    @contextmanager
    def adopting(self, *, except_names: Container[str] = ()) -> Iterator[None]:
        """Threads started meanwhile take part in the clock from their start, but those named
        in `except_names` (a thread that only blocks on a queue and never waits on the clock,
        e.g. a file writer, would hold the clock still forever)."""
        real_start = threading.Thread.start
        clock = self

        def start(thread: threading.Thread, *args: Any, **kwargs: Any) -> None:
            if thread.name not in except_names:
                with clock._cond:
                    clock._threads[thread] = None
            real_start(thread, *args, **kwargs)

        threading.Thread.start = start  # type: ignore[method-assign]
        try:
            yield
        finally:
            threading.Thread.start = real_start  # type: ignore[method-assign]

    def sleep(self, seconds: float) -> None:
        self.wait(threading.Event(), seconds)

    def sleep_until(self, when: float) -> None:
        self.sleep(max(0.0, when - self()))

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        me = threading.current_thread()
        give_up = time.monotonic() + self._real_timeout
        with self._cond:
            deadline = self._now + (timeout if timeout is not None else 1e9)
            try:
                while True:
                    if event.is_set():
                        return True
                    if self._now >= deadline:
                        return False
                    self._threads[me] = (deadline, event)
                    self._advance_locked()
                    if self._now >= deadline:
                        continue
                    if time.monotonic() > give_up:
                        raise VirtualClockTimeout(
                            f"virtual time stuck at {self._now:.3f} (waiting for {deadline:.3f})"
                        )
                    # Real polling only notices `event.set()` from another thread.
                    self._cond.wait(0.002)
            finally:
                if me in self._threads:
                    self._threads[me] = None

    def _advance_locked(self) -> None:
        for t in [t for t in self._threads if not t.is_alive() and t.ident is not None]:
            del self._threads[t]
        waits = list(self._threads.values())
        if not waits or any(w is None or w[1].is_set() for w in waits):
            # Somebody is running, or will as soon as it notices its event (the set happens
            # outside the lock: time must not move before the waiter wakes, or it would see
            # its event late by however long the machine took to schedule it).
            return
        nxt = min(w[0] for w in waits if w is not None)
        if nxt > self._now:
            self._now = nxt
            self.advances += 1
            self._cond.notify_all()
