"""Layout pieces of the main window (GUI thread): side panels that narrow before anything is
clipped, scrolling panel bodies, and buttons that are never narrower than their text."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)


class SidePanel(QFrame):
    """A titled panel that prefers `width` and narrows to `minimum` when space runs out."""

    def __init__(self, title: str, body: QWidget, parent: QWidget, *, width: int, minimum: int):
        super().__init__(parent)
        self.setObjectName("SidePanel")
        self._width = width
        self.setMinimumWidth(minimum)
        self.setMaximumWidth(width)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        heading = QLabel(title, self)
        heading.setObjectName("PanelTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 10)
        layout.addWidget(heading)
        layout.addWidget(body, 1)

    def sizeHint(self) -> QSize:
        return QSize(self._width, super().sizeHint().height())


def fit_text_width(button: QPushButton, *texts: str) -> None:
    """Never narrower than the widest of `texts` (a button's states), padding included."""
    metrics = button.fontMetrics()
    widest = max(metrics.horizontalAdvance(t.replace("&", "")) for t in texts)
    button.setMinimumWidth(widest + button_padding(button))


def button_padding(button: QPushButton) -> int:
    """Horizontal space a button needs beside its text (the stylesheet's padding and border)."""
    return 56 if button.objectName() == "GoLive" else 30


MIN_SIZE = QSize(1000, 600)
DEFAULT_SIZE = QSize(1240, 760)
TITLE_BAR = 40  # room kept for the window's title bar (the task bar is already left out)


def default_size(available: QSize) -> QSize:
    """The first-run window size for a screen's available area (task bars left out)."""
    return QSize(
        max(MIN_SIZE.width(), min(DEFAULT_SIZE.width(), available.width() - 16)),
        max(MIN_SIZE.height(), min(DEFAULT_SIZE.height(), available.height() - TITLE_BAR)),
    )


def scrolling(body: QWidget, parent: QWidget) -> QScrollArea:
    """`body` in a vertical-only scroll area: a short window scrolls the panel, never clips it."""
    area = QScrollArea(parent)
    area.setObjectName("PanelScroll")
    area.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Tab goes straight to its controls
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(body)
    body.setContentsMargins(0, 8, 6, 0)
    return area
