"""In the dark theme, spin-box arrows and the file dialog's toolbar icons can be seen (issue
24, item 10): drawn light on the dark background, not Fusion's dark grey."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QSpinBox, QStyle, QStyleOptionSpinBox
from pytestqt.qtbot import QtBot

from desktop_app import theme

LIGHT = 150  # 0..255 lightness a mark must reach to be seen on the #262a33 field


@pytest.fixture
def themed(qapp: QApplication) -> Iterator[None]:
    palette, sheet, style = qapp.palette(), qapp.styleSheet(), qapp.style().name()
    theme.apply(qapp)
    yield
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)
    qapp.setStyle(style)


def lightest(image: QImage) -> int:
    """The lightness of the lightest opaque pixel."""
    best = 0
    for y in range(image.height()):
        for x in range(image.width()):
            colour = QColor(image.pixelColor(x, y))
            if colour.alpha() > 128:
                best = max(best, colour.lightness())
    return best


@pytest.mark.parametrize(
    "icon",
    [
        QStyle.StandardPixmap.SP_FileDialogBack,
        QStyle.StandardPixmap.SP_FileDialogToParent,
        QStyle.StandardPixmap.SP_FileDialogNewFolder,
        QStyle.StandardPixmap.SP_FileDialogDetailedView,
        QStyle.StandardPixmap.SP_FileDialogListView,
        QStyle.StandardPixmap.SP_ArrowForward,
    ],
)
def test_file_dialog_toolbar_icons_are_light(
    themed: None, qapp: QApplication, icon: QStyle.StandardPixmap
) -> None:
    pixmap = qapp.style().standardIcon(icon).pixmap(QSize(16, 16))
    assert not pixmap.isNull()
    assert lightest(pixmap.toImage()) >= LIGHT


def test_spin_box_arrows_are_light(qtbot: QtBot, themed: None) -> None:
    spin = QSpinBox()
    spin.setRange(0, 10)
    spin.setValue(5)
    qtbot.addWidget(spin)
    spin.resize(140, 34)
    spin.show()
    qtbot.waitExposed(spin)
    image = spin.grab().toImage()
    option = QStyleOptionSpinBox()
    spin.initStyleOption(option)
    for part in (QStyle.SubControl.SC_SpinBoxUp, QStyle.SubControl.SC_SpinBoxDown):
        box = spin.style().subControlRect(QStyle.ComplexControl.CC_SpinBox, option, part, spin)
        assert box.width() > 0
        assert lightest(image.copy(box)) >= LIGHT, part
