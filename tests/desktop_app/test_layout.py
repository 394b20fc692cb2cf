"""The main window's layout holds from a 1024x640 window up: nothing clipped, every button
as wide as its text, the settings inside the window. Screenshots of each size (both settings
tabs, the virtual-camera banner and a problem shown) land in tests/output/ for a human."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, QSize
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QCheckBox,
    QLabel,
    QPushButton,
    QRadioButton,
    QStyle,
    QStyleOptionButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from desktop_app import theme
from desktop_app.main_window import MIN_SIZE, MainWindow
from desktop_app.panels import default_size
from tests.support.gui import restored_size
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import WindowFactory

SIZES = [(1024, 640), (1366, 768), (1920, 1080)]
INDICATOR = 26  # a check box's or radio button's box and its spacing


def _visible(widget: QWidget, window: MainWindow) -> bool:
    return widget.isVisibleTo(window) and widget.window() is window


def clipped_buttons(window: MainWindow) -> list[str]:
    """Buttons whose text does not fit their width, described for the assertion message."""
    bad = []
    for button in window.findChildren(QAbstractButton):
        if not _visible(button, window) or not button.text():
            continue
        text = button.text().replace("&", "")
        need = button.fontMetrics().horizontalAdvance(text)
        if isinstance(button, QPushButton):
            room = text_room(button)
        else:
            room = button.width() - (
                INDICATOR if isinstance(button, QCheckBox | QRadioButton) else 0
            )
        if need > room:
            bad.append(f"{text!r}: needs {need} px, has {room}")
    return bad


def text_room(button: QPushButton) -> int:
    """The width the style leaves for a push button's text (padding and border taken off)."""
    option = QStyleOptionButton()
    button.initStyleOption(option)
    option.rect = button.rect()
    style = button.style()
    return style.subElementRect(QStyle.SubElement.SE_PushButtonContents, option, button).width()


@pytest.fixture
def themed(qapp: QApplication) -> Iterator[None]:
    """The app's real look (stylesheet fonts and paddings decide what fits)."""
    palette, sheet = qapp.palette(), qapp.styleSheet()
    theme.apply(qapp)
    yield
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)


def outside_window(window: MainWindow) -> list[str]:
    """Visible controls that reach past the window's right or bottom edge."""
    area = window.rect()
    bad = []
    for widget in window.findChildren(QWidget):
        if not _visible(widget, window) or (isinstance(widget, QLabel) and not widget.text()):
            continue
        top_left = widget.mapTo(window, widget.rect().topLeft())
        box = QRect(top_left, widget.size())
        scroller = widget.parentWidget()
        while scroller is not None and scroller.objectName() != "PanelScroll":
            scroller = scroller.parentWidget()
        if scroller is not None:
            # Scrolls vertically only: reachable below, but nothing may stick out sideways.
            view = scroller.viewport()  # type: ignore[attr-defined]
            if not view.isAncestorOf(widget):
                continue  # the scroll bar
            right = view.mapTo(window, view.rect().topRight()).x()
            if box.right() > right + 1:
                bad.append(f"{type(widget).__name__} {widget.objectName()} {box} > {right}")
            continue
        if box.right() > area.right() + 1 or box.bottom() > area.bottom() + 1:
            bad.append(f"{type(widget).__name__} {widget.objectName()} {box}")
    return bad


def wrapped_per_word(label: QLabel) -> bool:
    """A word-wrapped label squeezed to about one word per line."""
    if not label.wordWrap() or not label.text() or not label.isVisible():
        return False
    lines = max(1, round(label.height() / label.fontMetrics().lineSpacing()))
    return lines > 1 and lines >= len(label.text().split()) - 1


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_nothing_is_clipped(
    qtbot: QtBot,
    themed: None,
    make_window: WindowFactory,
    output_dir: Path,
    width: int,
    height: int,
) -> None:
    window = make_window(vcam_backend="fake-busy")  # shows the virtual-camera banner
    qtbot.waitUntil(window.vcam_help.isVisible, timeout=5_000)
    window.alerts.show_alert(
        "source",
        "The webcam “0: Fake Camera” cannot be opened: it is not connected, or another app "
        "is using it.",
        action=("Use the microphone", lambda: None),
    )
    window.resize(width, height)
    qtbot.waitUntil(lambda: window.size() == QSize(width, height), timeout=2_000)
    assert window.minimumSizeHint().width() <= 1024 and window.minimumSizeHint().height() <= 640
    for tab in (0, 1):
        window.tabs.setCurrentIndex(tab)
        qtbot.wait(50)  # let the layouts settle
        name = f"gui_layout_{width}x{height}_{'source' if tab == 0 else 'controls'}.png"
        window.grab().save(str(output_dir / name))
        assert clipped_buttons(window) == [], (name, clipped_buttons(window))
        assert outside_window(window) == [], (name, outside_window(window))
        banners = [window.vcam_help.headline, window.alerts.label]
        assert [b.text() for b in banners if wrapped_per_word(b)] == [], name
    # Live-bar buttons keep their text in every state they can show.
    window.record_button.setText("■ Stop &recording")
    window.live_button.setText("Stopping…")
    assert clipped_buttons(window) == []


def test_window_fits_a_1366x768_laptop_and_its_size_comes_back(
    qtbot: QtBot, make_window: WindowFactory
) -> None:
    # A 1366x768 screen with a 40 px task bar: the window and a 32 px title bar fit.
    size = default_size(QSize(1366, 728))
    assert size.width() <= 1366 and size.height() + 32 <= 728
    assert size.width() >= MIN_SIZE.width() and size.height() >= MIN_SIZE.height()
    first = make_window()
    first.resize(1024, 640)
    qtbot.waitUntil(lambda: first.size() == QSize(1024, 640), timeout=2_000)
    first.close()
    saved, _ = first.prefs.store.load()
    assert saved.window_geometry
    second = make_window()
    assert second.size() == restored_size(second, saved.window_geometry)
    assert second.height() == 640  # a saved small window stays small


def test_the_settings_use_the_width_of_a_large_window(
    qtbot: QtBot, themed: None, make_window: WindowFactory
) -> None:
    window = make_window()
    settings = window.tabs.parentWidget()
    window.resize(1240, 760)
    qtbot.waitUntil(lambda: window.width() == 1240, timeout=2_000)
    qtbot.wait(20)
    default = settings.width()
    window.resize(1920, 1080)
    qtbot.waitUntil(lambda: window.width() == 1920, timeout=2_000)
    qtbot.waitUntil(lambda: settings.width() >= default + 120, timeout=2_000)
    # The Hop choice reads whole at that width.
    window.tabs.setCurrentIndex(1)
    qtbot.wait(50)
    assert window.controls.hop.shown_text() == window.controls.hop.currentText()
