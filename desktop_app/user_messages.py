"""What the window tells the user (GUI thread): warnings and answers in a message box, short
news in the status bar. Controllers are given this object rather than the window, so they
reach the user without knowing the window's type."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QMainWindow, QMessageBox

logger = logging.getLogger(__name__)

WINDOW_TITLE = "imtalker-cam"


class UserMessages:
    def __init__(self, window: QMainWindow) -> None:
        self._window = window
        self.closing = False  # set when the window closes: no new boxes, only the log

    def error(self, message: str) -> None:
        logger.warning("%s", message)
        if self.closing:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, WINDOW_TITLE, message, parent=self._window)
        box.setAccessibleName("Error")
        box.open()

    def info(self, message: str) -> None:
        """A message box that informs (no warning sign)."""
        logger.info("%s", message)
        if self.closing:
            return
        box = QMessageBox(QMessageBox.Icon.Information, WINDOW_TITLE, message, parent=self._window)
        box.setAccessibleName("Information")
        box.open()

    def status(self, message: str, timeout_ms: int = 0) -> None:
        """`message` in the status bar; 0 keeps it until the next one."""
        self._window.statusBar().showMessage(message, timeout_ms)
