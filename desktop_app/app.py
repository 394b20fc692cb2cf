"""Desktop app entry point (GUI thread): builds the QApplication and the main window."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from PySide6.QtWidgets import QApplication

from desktop_app.main_window import MainWindow

logger = logging.getLogger(__name__)

APP_NAME = "imtalker-cam"


def create_app(argv: Sequence[str]) -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(list(argv))
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    return app


def run(argv: Sequence[str] | None = None) -> int:
    app = create_app(sys.argv if argv is None else argv)
    window = MainWindow()
    window.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(run())
