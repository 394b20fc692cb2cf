"""Run slow work off the GUI thread (the runner lives on the GUI thread; tasks run on its worker).

`TaskRunner` owns one plain Python worker thread and runs submitted callables on it in order,
so engine operations (start, switch avatar, stop) never overlap. A task's result or error
comes back to the GUI thread as a Qt signal (queued across threads), which then calls the
callback given at submission: worker threads never touch a widget. The signal carries only
the task's ticket; the result waits in a dict. (A queued signal that carries a Python object
and is still pending when the app exits can crash PySide6 while the interpreter finalises.)

`ProgressRelay` carries a worker's progress reports to the GUI thread the same way: the
newest report waits in the relay and a bare signal says one is there, so a fast worker never
floods the event loop.

`CancellableRunner` is a dialog's worker: a `TaskRunner` plus the cancel flag of the task it
runs, so closing the dialog (through `done()`, `closeEvent()` or both) cancels that task and
waits for the worker in one call.

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
from typing import Generic, TypeVar

from PySide6.QtCore import QObject, Signal

logger = logging.getLogger(__name__)

T = TypeVar("T")  # a task's result
P = TypeVar("P")  # a progress report
OnError = Callable[[BaseException], None]


@dataclass(frozen=True)
class _Job(Generic[T]):
    ticket: int
    fn: Callable[[], T]
    on_done: Callable[[T], None] | None
    on_error: OnError | None

    def run(self, name: str) -> Callable[[], None]:
        """Run the task (worker thread); returns the call that reports its outcome, for the
        GUI thread to make."""
        try:
            value = self.fn()
        except BaseException as exc:  # reported to the GUI, which decides what to show
            logger.debug("task %d on %s failed", self.ticket, name, exc_info=True)
            error = exc.with_traceback(None)
            return lambda: self._failed(error)
        return lambda: self._done(value)

    def _done(self, value: T) -> None:
        if self.on_done is not None:
            self.on_done(value)

    def _failed(self, error: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(error)
        else:
            logger.error("background task failed: %s", error)


_STOP = object()


class TaskRunner(QObject):
    _finished = Signal(int)  # ticket; the outcome's report is in self._reports

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._name = name
        self._queue: queue.Queue[object] = queue.Queue()  # jobs, then _STOP
        self._tickets = itertools.count(1)
        self._reports: dict[int, Callable[[], None]] = {}  # ticket -> its outcome's report
        self._reports_lock = threading.Lock()
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
        fn: Callable[[], T],
        *,
        on_done: Callable[[T], None] | None = None,
        on_error: OnError | None = None,
    ) -> int:
        """Queue `fn`; `on_done(result)` / `on_error(exc)` run later on the GUI thread."""
        if self._closed.is_set():
            raise RuntimeError(f"task runner {self._name!r} is shut down")
        ticket = next(self._tickets)
        self._pending += 1
        self._queue.put(_Job(ticket, fn, on_done, on_error))
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
            report = job.run(self._name)
            if self._closed.is_set():
                continue
            with self._reports_lock:
                self._reports[job.ticket] = report
            self._finished.emit(job.ticket)

    def _deliver(self, ticket: int) -> None:
        with self._reports_lock:
            report = self._reports.pop(ticket, None)
        self._pending -= 1
        if report is not None:
            report()


class ProgressRelay(QObject, Generic[P]):
    """Progress from a worker thread: `put` (any thread) keeps only the newest report;
    `progress` emits it on the GUI thread."""

    available = Signal()
    progress = Signal(object)  # the report, emitted on the GUI thread

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: P | None = None
        self.available.connect(self._deliver)

    def put(self, report: P) -> None:
        """Worker thread."""
        with self._lock:
            notify = self._latest is None
            self._latest = report
        if notify:
            self.available.emit()

    def _deliver(self) -> None:
        with self._lock:
            report, self._latest = self._latest, None
        if report is not None:
            self.progress.emit(report)


class CancellableRunner:
    """A `TaskRunner` whose current task can be cancelled (GUI thread; tasks poll their flag
    on the worker).

    `begin()` hands out a fresh flag for the next task; `cancel()` sets the current one;
    `close()` sets it and waits for the worker. `close()` may run more than once: a dialog
    closes through `done()`, `closeEvent()` or both (QDialog's closeEvent calls reject)."""

    def __init__(self, name: str, parent: QObject, *, close_timeout: float = 30.0) -> None:
        self.runner = TaskRunner(name, parent)
        self._close_timeout = close_timeout
        self._flag = threading.Event()

    @property
    def cancelled(self) -> bool:
        """Whether the current task was asked to stop."""
        return self._flag.is_set()

    def begin(self) -> threading.Event:
        """The cancel flag for the next task (a new one: an old task's cancel stays its own)."""
        self._flag = threading.Event()
        return self._flag

    def cancel(self) -> None:
        self._flag.set()

    def submit(
        self,
        fn: Callable[[], T],
        *,
        on_done: Callable[[T], None] | None = None,
        on_error: OnError | None = None,
    ) -> int:
        """`TaskRunner.submit`."""
        return self.runner.submit(fn, on_done=on_done, on_error=on_error)

    def close(self) -> bool:
        """Cancel the current task and stop the worker; True when it ended in time."""
        self._flag.set()
        return self.runner.shutdown(timeout=self._close_timeout)
