"""Helpers for the GUI tests: which controls a keyboard or screen-reader user can reach, and
the size a restored window gets."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSize
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QListView,
    QMainWindow,
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


def mnemonic(text: str) -> str | None:
    """The letter after a single '&' ("S&napshot" -> "n"), lower case; None without one."""
    i = 0
    while i < len(text) - 1:
        if text[i] == "&":
            if text[i + 1] != "&":
                return text[i + 1].lower()
            i += 1  # "&&" is a literal ampersand
        i += 1
    return None


def mnemonics(root: QWidget) -> dict[str, list[str]]:
    """Every Alt+letter in the window of `root`: controls with '&' in their text, labels with a
    buddy, group boxes, tabs and the menu bar's titles -> who claims each letter."""
    from PySide6.QtWidgets import QGroupBox, QLabel, QMainWindow, QTabBar

    claims: dict[str, list[str]] = {}

    def claim(text: str, who: str) -> None:
        letter = mnemonic(text)
        if letter is not None:
            claims.setdefault(letter, []).append(who)

    for widget in [root, *root.findChildren(QWidget)]:
        if widget.window() is not root.window():
            continue
        if isinstance(widget, QAbstractButton):
            claim(widget.text(), f"button {widget.text()!r}")
        elif isinstance(widget, QLabel) and widget.buddy() is not None:
            claim(widget.text(), f"label {widget.text()!r}")
        elif isinstance(widget, QGroupBox):
            claim(widget.title(), f"group {widget.title()!r}")
        elif isinstance(widget, QTabBar):
            for i in range(widget.count()):
                claim(widget.tabText(i), f"tab {widget.tabText(i)!r}")
    if isinstance(root, QMainWindow):
        for action in root.menuBar().actions():
            claim(action.text(), f"menu {action.text()!r}")
    return claims


def restored_size(window: QWidget, geometry: str) -> QSize:
    """The size Qt gives a window like `window` (its minimum size) restored from `geometry`
    (saved base64): Qt fits a restored window to the screen, and the offscreen one is small,
    so a restored window is compared with this rather than with the size it was saved at."""
    probe = QMainWindow()
    probe.setMinimumSize(window.minimumSize())
    probe.restoreGeometry(QByteArray.fromBase64(geometry.encode()))
    return probe.size()
