"""The mouse wheel never changes a setting by accident (GUI thread).

One event filter on the application: a combo box, spin box or slider takes the wheel only
while it has keyboard focus; otherwise the wheel goes to the scroll area around it (the
settings panel scrolls) or, outside one, on to its parent. The same filter takes
`Qt.WheelFocus` out of those widgets' focus policies when they are polished, because Qt gives
wheel focus before any filter runs and the second notch would then change the value.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollBar,
    QWidget,
)

_GUARDED = (QComboBox, QAbstractSpinBox, QAbstractSlider)


def _guarded(obj: QObject) -> QWidget | None:
    if isinstance(obj, _GUARDED) and not isinstance(obj, QScrollBar):
        return obj
    return None


class WheelGuard(QObject):
    """Installed once on the QApplication by `install`."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        widget = _guarded(watched)
        if widget is None:
            return False
        if event.type() == QEvent.Type.Polish:
            if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            return False
        if event.type() == QEvent.Type.Wheel and not widget.hasFocus():
            assert isinstance(event, QWheelEvent)
            area = _scroll_area_of(widget)
            if area is not None:
                _forward(event, widget, area.viewport())
                return True
            # Filtered but not accepted: QApplication passes a real wheel on to the parent.
            event.ignore()
            return True
        return False


def _scroll_area_of(widget: QWidget) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea):
            return parent
        parent = parent.parentWidget()
    return None


def _forward(event: QWheelEvent, source: QWidget, target: QWidget) -> None:
    """The same notch, delivered to `target` (the scroll area's viewport) where it happened."""
    position = QPointF(target.mapFrom(source, event.position().toPoint()))
    moved = QWheelEvent(
        position,
        event.globalPosition(),
        event.pixelDelta(),
        event.angleDelta(),
        event.buttons(),
        event.modifiers(),
        event.phase(),
        event.inverted(),
        event.source(),
    )
    QApplication.sendEvent(target, moved)


def install(app: QApplication) -> WheelGuard:
    """Install the guard on `app` once (a second call returns the first guard)."""
    existing = app.findChild(WheelGuard)
    if isinstance(existing, WheelGuard):
        return existing
    guard = WheelGuard(app)
    app.installEventFilter(guard)
    for widget in app.allWidgets():  # those polished before the guard was there
        if _guarded(widget) is not None and widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    return guard
