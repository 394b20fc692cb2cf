"""The crop dialog: starts on the detected face, moves and zooms by mouse and keyboard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app import theme
from desktop_app.crop_dialog import Bounds, CropDialog, bounds_for, clamp_square
from desktop_app.gallery import CropSquare
from desktop_app.images import rgb_to_qimage
from desktop_app.runtime_services.models import RuntimeAvatars
from runtime.model.versions import V1, V2


def test_clamp_keeps_the_square_inside_the_bounds() -> None:
    bounds = Bounds(-10, -10, 120, 100)
    assert clamp_square(CropSquare(-50, 500, 80), bounds) == CropSquare(-10, 10, 80)
    assert clamp_square(CropSquare(0, 0, 1000), bounds) == CropSquare(0, -10, 100)
    assert clamp_square(CropSquare(0, 0, 3), bounds).size == 64
    # The margin grows to hold a suggested square that reaches past the photo.
    grown = bounds_for(100, 100, CropSquare(-40, 20, 90))
    assert grown.left == -40 and grown.top == -10


def test_dialog_starts_on_the_face_and_follows_keys_wheel_and_drag(
    qtbot: QtBot, fixtures_dir: Path, output_dir: Path
) -> None:
    theme.apply(QApplication.instance())  # type: ignore[arg-type]
    avatars = RuntimeAvatars()
    photo = avatars.load_photo(fixtures_dir / "source_1.png")
    detected = avatars.detect_face(photo)
    assert detected is not None
    dialog = CropDialog(rgb_to_qimage(photo), detected=detected, name="source_1")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.square == detected
    assert dialog.focusWidget() is dialog.view
    dialog.grab().save(str(output_dir / "crop_dialog.png"))

    start = dialog.square
    qtbot.keyClick(dialog.view, Qt.Key.Key_Right)
    qtbot.keyClick(dialog.view, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    moved = dialog.square
    assert moved.x > start.x and moved.y - start.y > moved.x - start.x  # Shift = bigger step
    assert moved.size == start.size

    qtbot.keyClick(dialog.view, Qt.Key.Key_Plus)
    assert dialog.square.size < moved.size
    assert dialog.zoom.value() == dialog.square.size  # the slider follows

    before = dialog.square.size
    centre = QPointF(dialog.view.width() / 2, dialog.view.height() / 2)
    wheel = QWheelEvent(
        centre,
        dialog.view.mapToGlobal(centre),
        QPoint(0, 0),
        QPoint(0, -240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(dialog.view, wheel)
    assert dialog.square.size > before  # scrolling down zooms out

    dialog.zoom.setValue(300)
    assert dialog.square.size == 300

    # Drag the square 40 widget pixels to the left.
    square_rect = dialog.view._square_rect()
    grab = square_rect.center().toPoint()
    x_before = dialog.square.x
    qtbot.mousePress(dialog.view, Qt.MouseButton.LeftButton, pos=grab)
    qtbot.mouseMove(dialog.view, grab - QPoint(40, 0))
    qtbot.mouseRelease(dialog.view, Qt.MouseButton.LeftButton, pos=grab - QPoint(40, 0))
    assert dialog.square.x < x_before

    qtbot.mouseClick(dialog.reset_button, Qt.MouseButton.LeftButton)
    assert dialog.square == detected

    dialog.name_edit.setText("  My   face ")
    dialog.accept_button.click()
    assert dialog.result() == CropDialog.DialogCode.Accepted
    assert dialog.name == "My face"
    # Cut at the source size of the model the hub serves (v2: 512) unless a size is asked for.
    crop = avatars.crop(photo, dialog.square)
    assert crop.shape == (V2.source_size, V2.source_size, 3) == (512, 512, 3)
    assert avatars.crop(photo, dialog.square, size=V1.source_size).shape == (256, 256, 3)


def test_no_face_starts_centred_and_says_so(qtbot: QtBot) -> None:
    blank = np.full((200, 320, 3), 128, np.uint8)
    assert RuntimeAvatars().detect_face(blank) is None
    dialog = CropDialog(rgb_to_qimage(blank), detected=None, name="blank")
    qtbot.addWidget(dialog)
    assert dialog.square == CropSquare(60, 0, 200)
    assert "No face was found" in dialog.intro.text()
