"""Hold stop signals back across a few statements that must not be split (main thread).

Creating a temporary file and recording its name are two steps; a SIGTERM/SIGHUP/SIGINT handler
that raises between them would leave a file nobody knows to delete. Inside `deferred_stop_signals`
those signals are only noted; when the block ends the usual handlers are back and each noted
signal is raised again, so the clean-up that follows can find the file. Python runs signal
handlers on the main thread only (whichever OS thread the signal hit), so swapping the handlers
there is enough; off the main thread this is a no-op.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def deferred_stop_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)
