"""Run slow work off the GUI thread (the runner lives on the GUI thread; tasks run on its worker).

`TaskRunner` owns one plain Python worker thread and runs submitted callables on it in order,
so engine operations (start, switch avatar, stop) never overlap. A task's result or error
comes back to the GUI thread as a Qt signal (queued across threads), which then calls the
callback given at submission: worker threads never touch a widget. The signal carries only
the task's ticket; the result waits in a dict. (A queued signal that carries a Python object
and is still pending when the app exits can crash PySide6 while the interpreter finalises.)

`shutdown()` stops accepting work, lets the queue drain and joins the thread, so closing the
window mid-task ends cleanly; after it no signal is emitted.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

logger = logging.getLogger(__name__)

OnDone = Callable[[Any], None]
OnError = Callable[[BaseException], None]


@dataclass(frozen=True)
class _Job:
    ticket: int
    fn: Callable[[], Any]


_STOP = object()


class TaskRunner(QObject):
    _finished = Signal(int)  # ticket; the outcome is in self._outcomes

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._name = name
        self._queue: queue.Queue[_Job | object] = queue.Queue()
        self._tickets = itertools.count(1)
        self._callbacks: dict[int, tuple[OnDone | None, OnError | None]] = {}
        self._outcomes: dict[int, tuple[bool, Any]] = {}  # ticket -> (succeeded, value)
        self._outcomes_lock = threading.Lock()
        self._closed = threading.Event()
        self._pending = 0
        self._thread = threading.Thread(target=self._work, name=f"imtalker-{name}", daemon=True)
        self._finished.connect(self._deliver)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def submit(
        self,
        fn: Callable[[], Any],
        *,
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
    ) -> int:
        """Queue `fn`; `on_done(result)` / `on_error(exc)` run later on the GUI thread."""
        if self._closed.is_set():
            raise RuntimeError(f"task runner {self._name!r} is shut down")
        ticket = next(self._tickets)
        self._callbacks[ticket] = (on_done, on_error)
        self._pending += 1
        self._queue.put(_Job(ticket, fn))
        return ticket

    def shutdown(self, *, timeout: float = 10.0) -> bool:
        """Run what is queued, then stop the worker. True when it ended within `timeout`."""
        if not self._thread.is_alive():
            self._closed.set()
            return True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._closed.set()
        ended = not self._thread.is_alive()
        if not ended:
            logger.warning("worker %r still busy after %.0fs; leaving it", self._name, timeout)
        return ended

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP or not isinstance(job, _Job):
                return
            outcome: tuple[bool, Any]
            try:
                outcome = (True, job.fn())
            except BaseException as exc:  # reported to the GUI, which decides what to show
                logger.debug("task %d on %s failed", job.ticket, self._name, exc_info=True)
                outcome = (False, exc.with_traceback(None))
            if self._closed.is_set():
                continue
            with self._outcomes_lock:
                self._outcomes[job.ticket] = outcome
            self._finished.emit(job.ticket)

    def _deliver(self, ticket: int) -> None:
        with self._outcomes_lock:
            succeeded, value = self._outcomes.pop(ticket, (False, None))
        on_done, on_error = self._callbacks.pop(ticket, (None, None))
        self._pending -= 1
        if succeeded:
            if on_done is not None:
                on_done(value)
        elif on_error is not None:
            on_error(value)
        else:
            logger.error("background task failed: %s", value)
