"""Stop signals raised inside `deferred_stop_signals` arrive after the block, not inside it."""

from __future__ import annotations

import os
import signal

import pytest

from runtime.core.signals import deferred_stop_signals

STOP_SIGNALS = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None), signal.SIGINT) if s]


class Stop(BaseException):
    pass


def _raise(signum: int, frame: object) -> None:
    raise Stop(signum)


@pytest.mark.parametrize("sig", STOP_SIGNALS)
def test_signal_is_held_until_the_block_ends(sig: signal.Signals) -> None:
    previous = signal.signal(sig, _raise)
    steps: list[str] = []
    try:
        with pytest.raises(Stop):
            with deferred_stop_signals():
                os.kill(os.getpid(), sig)
                steps.append("created")
                steps.append("recorded")
            steps.append("after")  # never reached: the held signal is delivered first
        assert signal.getsignal(sig) is _raise  # the usual handler is back
    finally:
        signal.signal(sig, previous)
    assert steps == ["created", "recorded"]
