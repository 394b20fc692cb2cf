"""A long status-bar message keeps its end (issue 24, item 10: "... the file will be a
slides"): the middle gives way, the whole message is the tooltip."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize
from pytestqt.qtbot import QtBot

from desktop_app.main_window import MainWindow
from desktop_app.status_messages import MessageFitter
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)

LONG = (
    "● Recording 0:12 to /home/someone/Videos/imtalker-cam/recordings/weekly meetings/"
    "2026-12-07 15-42-10 talk with the whole product team about the roadmap.mp4 - not real "
    "time: the file will be a slideshow"
)


def test_a_long_recording_message_keeps_its_end(
    qtbot: QtBot, window: MainWindow, output_dir: Path
) -> None:
    window.resize(1024, 640)
    qtbot.waitUntil(lambda: window.size() == QSize(1024, 640), timeout=2_000)
    bar = window.statusBar()
    bar.showMessage(LONG)
    fitter = bar.findChild(MessageFitter)
    assert fitter is not None
    shown = fitter.shown_text()
    assert shown != LONG and shown.endswith("the file will be a slideshow")
    assert shown.startswith("● Recording 0:12 to ")
    assert bar.fontMetrics().horizontalAdvance(shown) <= fitter.room().width()
    assert bar.toolTip() == LONG
    bar.grab().save(str(output_dir / "status_message_1024.png"))  # the fitted message
    bar.showMessage("Saved.")
    assert fitter.shown_text() == "Saved." and bar.toolTip() == ""
