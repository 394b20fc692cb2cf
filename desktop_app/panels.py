"""Layout pieces of the main window (GUI thread): side panels that narrow before anything is
clipped, scrolling panel bodies, and buttons that are never narrower than their text."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

MIN_SIZE = QSize(1000, 600)
DEFAULT_SIZE = QSize(1240, 760)
TITLE_BAR = 40  # room kept for the window's title bar (the task bar is already left out)


class SidePanel(QFrame):
    """A titled panel that prefers `width` at the default window size, grows with a wider
    window (up to `GROWTH` times; a 1920-px window gives the settings room for their texts)
    and narrows to `minimum` when space runs out."""

    GROWTH = 1.45

    def __init__(self, title: str, body: QWidget, parent: QWidget, *, width: int, minimum: int):
        super().__init__(parent)
        self.setObjectName("SidePanel")
        self._width = width
        self._watched: QWidget | None = None
        self.setMinimumWidth(minimum)
        self.setMaximumWidth(round(width * self.GROWTH))
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        heading = QLabel(title, self)
        heading.setObjectName("PanelTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 10)
        layout.addWidget(heading)
        layout.addWidget(body, 1)

    def preferred_width(self) -> int:
        """`width` at the default window width, in proportion above it, capped."""
        window = self.window().width() if self.window() is not self else DEFAULT_SIZE.width()
        grown = round(self._width * window / DEFAULT_SIZE.width())
        return min(self.maximumWidth(), max(self._width, grown))

    def sizeHint(self) -> QSize:
        return QSize(self.preferred_width(), super().sizeHint().height())

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        window = self.window()
        if window is not self and window is not self._watched:
            window.installEventFilter(self)
            self._watched = window
        self.updateGeometry()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._watched and event.type() == QEvent.Type.Resize:
            self.updateGeometry()  # the preferred width follows the window's
        return False


def fit_text_width(button: QPushButton, *texts: str) -> None:
    """Never narrower than the widest of `texts` (a button's states), padding included."""
    metrics = button.fontMetrics()
    widest = max(metrics.horizontalAdvance(t.replace("&", "")) for t in texts)
    button.setMinimumWidth(widest + button_padding(button))


def button_padding(button: QPushButton) -> int:
    """Horizontal space a button needs beside its text (the stylesheet's padding and border)."""
    return 56 if button.objectName() == "GoLive" else 30


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
