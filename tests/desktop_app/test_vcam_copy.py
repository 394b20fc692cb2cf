"""The virtual-camera help copies the Linux `modprobe` line (issue 24, item 12)."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.vcam_help import MODPROBE, VirtualCameraHelp


def test_copy_button_puts_the_modprobe_line_on_the_clipboard(qtbot: QtBot) -> None:
    help_ = VirtualCameraHelp(platform="linux")
    qtbot.addWidget(help_)
    help_.show()
    assert not help_.copy_command.isVisible()  # only with the steps open
    help_.toggle.click()
    assert help_.copy_command.isVisible()
    assert MODPROBE in help_.details.toPlainText()  # the button copies what the text shows
    QApplication.clipboard().clear()
    help_.copy_command.click()
    assert QApplication.clipboard().text() == MODPROBE
    assert MODPROBE.startswith("sudo modprobe v4l2loopback") and "exclusive_caps=1" in MODPROBE


def test_no_copy_button_where_there_is_no_modprobe(qtbot: QtBot) -> None:
    help_ = VirtualCameraHelp(platform="win32")
    qtbot.addWidget(help_)
    help_.show()
    help_.toggle.click()
    assert not help_.copy_command.isVisible()
