"""The desktop app's top-level error boundary (installed and shown on the GUI thread; the
hooks may fire on any thread).

Any exception nothing else handled (in a slot, a timer, a worker thread, or while the window
is being built) becomes one sentence in a message box naming the file or setting involved
plus the path of a log file holding the full traceback; the traceback goes only to that file
(and the debug log), never to the user. Rules for the sentence and the log folder are the
commands' (`runtime.commands.boundary`), so the CLI and the GUI say the same thing.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from runtime.commands.boundary import describe, write_crash_log
from runtime.core.validate import ValidationError

logger = logging.getLogger(__name__)

TITLE = "imtalker-cam"


def sentence(exc: BaseException, log_path: Path | None, why_no_log: str = "") -> str:
    """The one line the user reads: what went wrong (naming the file or setting) and where
    the details are."""
    what = str(exc) if isinstance(exc, ValidationError) else describe(exc)
    what = what[:1].upper() + what[1:]
    where = (
        f"Full details are in {log_path}."
        if log_path is not None
        else f"No log file could be written ({why_no_log})."
    )
    return f"{what.rstrip('.')}. {where}"


def report(exc: BaseException, *, context: str) -> str:
    """Write the traceback to a new log file and return the sentence for the user."""
    details = "".join(traceback.format_exception(exc))
    log_path, why = write_crash_log(f"imtalker-cam (desktop app): {context}\n{details}")
    logger.debug("unhandled exception (%s):\n%s", context, details)
    text = sentence(exc, log_path, why)
    logger.error("%s", text)
    return text


def message_box(parent: QWidget | None, text: str) -> QMessageBox:
    """The box the boundary shows `text` in (deleted when closed)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(TITLE)
    box.setText(text)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    return box


class ErrorBoundary(QObject):
    """Installs `sys.excepthook` and `threading.excepthook`; shows at most one message box at
    a time (errors that arrive while it is open are logged, each to its own file)."""

    shown = Signal(str)  # the sentence, once its box is on screen
    _arrived = Signal(str)  # from any thread to the GUI thread

    def __init__(self, parent_window: Callable[[], QWidget | None] | None = None) -> None:
        super().__init__()
        self._parent_window = parent_window or QApplication.activeWindow
        self._box: QMessageBox | None = None
        self._previous_sys = sys.excepthook
        self._previous_threading = threading.excepthook
        self._arrived.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self.messages: list[str] = []

    def install(self) -> ErrorBoundary:
        sys.excepthook = self._sys_hook
        threading.excepthook = self._thread_hook
        return self

    def uninstall(self) -> None:
        sys.excepthook = self._previous_sys
        threading.excepthook = self._previous_threading

    def _sys_hook(
        self,
        kind: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            app = QApplication.instance()
            if app is not None:
                app.quit()
            return
        self.handle(exc.with_traceback(tb), context="GUI thread")

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "a worker thread"
        self.handle(args.exc_value, context=f"thread {name}")

    def handle(self, exc: BaseException, *, context: str) -> str:
        """Log `exc` and show its sentence (on the GUI thread, whichever thread calls)."""
        text = report(exc, context=context)
        self.tell(text)
        return text

    def tell(self, text: str) -> None:
        """Show `text` in the boundary's message box (from any thread)."""
        self._arrived.emit(text)

    def _show(self, text: str) -> None:
        self.messages.append(text)
        if self._box is not None and self._box.isVisible():
            return
        box = message_box(self._parent_window(), text)
        box.destroyed.connect(self._forget)
        self._box = box
        box.open()  # window-modal, never blocks the event loop
        self.shown.emit(text)

    def _forget(self) -> None:
        self._box = None
