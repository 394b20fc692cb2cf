"""Stop signals raised inside `deferred_stop_signals` arrive after the block, not inside it."""

from __future__ import annotations

import os
import signal

import pytest

from runtime.core.signals import deferred_stop_signals

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks only"
)


class Stop(BaseException):
    pass


def _raise(signum: int, frame: object) -> None:
    raise Stop(signum)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
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
    finally:
        signal.signal(sig, previous)
    assert steps == ["created", "recorded"]
    # The mask is restored: the signal is no longer blocked.
    assert sig not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
