"""Hold stop signals back across a few statements that must not be split (main thread).

Creating a temporary file and recording its name are two steps; a SIGTERM/SIGHUP/SIGINT handler
that raises between them would leave a file nobody knows to delete. Inside `deferred_stop_signals`
those signals stay pending at the OS level and are delivered right after the block, when the
name is recorded and the clean-up can find it. A no-op where POSIX signal masks do not exist
(Windows) or off the main thread (Python runs handlers only there).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def deferred_stop_signals() -> Iterator[None]:
    if (
        not hasattr(signal, "pthread_sigmask")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
