"""Helpers for the GUI tests: which controls a keyboard or screen-reader user can reach."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QListView,
    QProgressBar,
    QScrollBar,
    QTabWidget,
    QWidget,
)

CONTROL_TYPES = (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QListView,
    QProgressBar,
    QTabWidget,
)


def user_controls(root: QWidget) -> list[QWidget]:
    """The interactive widgets under `root` that belong to the app (not Qt's internals)."""
    found = []
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, CONTROL_TYPES) or isinstance(widget, QScrollBar):
            continue
        if widget.objectName().startswith("qt_") or widget.window() is not root.window():
            continue
        if isinstance(widget.parent(), QComboBox | QTabWidget):
            continue  # a combo's popup list, a tab widget's own bar
        found.append(widget)
    return found


def unnamed(root: QWidget) -> list[str]:
    """Controls without an accessible name, described for the assertion message."""
    return [
        f"{type(w).__name__} {w.objectName() or ''} {getattr(w, 'text', lambda: '')()!r}"
        for w in user_controls(root)
        if not w.accessibleName()
    ]
