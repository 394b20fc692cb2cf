"""Waiting for something to happen in real time, with a bound (the test thread).

A test that only waits for another thread or process to reach a state polls for that state
instead of sleeping a fixed time: it goes on as soon as the state is reached, and the bound only
says how long a loaded machine may take before the test fails. Timing itself is checked on the
virtual clock (support/virtual_clock.py), never with these.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold within the bound."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    *,
    poll_s: float = 0.01,
    what: str | Callable[[], object] = "",
) -> T:
    """Poll `predicate` until it returns something truthy and return that; raise `WaitTimeout`
    after `timeout` real seconds, saying `what` (or what `what()` tells then)."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise WaitTimeout(f"not within {timeout} s: {said or predicate}")
        time.sleep(poll_s)


def eventually(predicate: Callable[[], object], timeout: float, *, poll_s: float = 0.01) -> bool:
    """Poll `predicate` for up to `timeout` real seconds: True as soon as it holds, False if it
    never did (for a fake that blocks until told to stop, or gives up)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True
