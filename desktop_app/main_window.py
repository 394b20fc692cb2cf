"""The main window (GUI thread)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow, QVBoxLayout, QWidget

WINDOW_TITLE = "imtalker-cam"


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(WINDOW_TITLE)
        self.resize(1100, 720)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        self.preview = QLabel("No avatar yet", central)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(512, 512)
        self.preview.setAccessibleName("Live preview")
        layout.addWidget(self.preview)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Virtual camera: not started")
