"""The desktop app opens its main window: offscreen (pytest-qt) and as a real X11 window."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from desktop_app.main_window import MainWindow
from tests.support.xvfb import grab_screen, xvfb


def test_main_window_title(qtbot: QtBot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.windowTitle() == "imtalker-cam"


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (1920, 1080)])
def test_app_command_opens_window_under_xvfb(output_dir: Path, width: int, height: int) -> None:
    shot = output_dir / f"main_window_idle_{width}x{height}.png"
    with xvfb(width, height) as display:
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        app = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                names = subprocess.run(
                    ["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True
                ).stdout
                if '"imtalker-cam"' in names:
                    break
                assert app.poll() is None, app.stdout.read() if app.stdout else ""
                time.sleep(0.25)
            else:
                pytest.fail("no window titled imtalker-cam appeared")
            time.sleep(1.0)  # let it paint
            grab_screen(display, shot)
        finally:
            app.terminate()
            app.wait(timeout=10)
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (width, height)
    # A painted window covers most of the (black) root window and shows text.
    samples = [image.pixel(x, y) for x in range(0, width, 8) for y in range(0, height, 8)]
    root_black = 0xFF000000
    assert sum(p != root_black for p in samples) * 64 > 900 * 600
    assert len(set(samples)) >= 3
