"""The app's start-up saves what a killed session recorded and says where (issue 25, item 7):
a real recorder in a child process writes into the app's data dir, is killed with SIGKILL, and
the next window's notice names the saved file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest

from desktop_app.main_window import MainWindow
from tests.runtime.sinks.test_recording_crash import CHILD, ROOT
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import WindowFactory

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def test_a_killed_recording_is_saved_and_said_at_the_next_start(
    make_window: WindowFactory, app_dirs: Path
) -> None:
    out = app_dirs / "talk.mp4"
    journal = app_dirs / "data" / "recordings"  # where the app's recordings keep their notes
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), str(journal)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recorded"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert not out.exists()
    window: MainWindow = make_window()
    text = window.notice_label.text()
    assert window.notice.isVisible() and "were saved as" in text and str(out) in text
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 70
    assert list(journal.iterdir()) == []
