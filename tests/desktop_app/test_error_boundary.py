"""The desktop app's error boundary (issue 17): an exception nothing handled, in a slot or a
worker thread, becomes one sentence in a message box naming the file, with the path of a log
file that holds the traceback; an unusable settings or data folder stops the app with one
sentence instead of a traceback."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from desktop_app import app as desktop
from desktop_app.error_boundary import ErrorBoundary


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA", "CACHE", "CONFIG"):
        monkeypatch.setenv(f"IMTALKER_{name}_DIR", str(tmp_path / name.lower()))


@pytest.fixture
def boundary(qtbot: QtBot) -> Iterator[ErrorBoundary]:
    installed = ErrorBoundary().install()
    yield installed
    installed.uninstall()
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, QMessageBox):
            widget.close()


def log_of(text: str) -> Path:
    path = Path(text.split("Full details are in ", 1)[1].rstrip("."))
    assert path.is_file()
    return path


@pytest.mark.qt_no_exception_capture
def test_an_exception_in_a_slot_becomes_one_sentence_naming_the_file(
    qtbot: QtBot, boundary: ErrorBoundary, tmp_path: Path
) -> None:
    button = QPushButton("Add photo")
    qtbot.addWidget(button)

    def open_photo() -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/home/me/photo.png")

    button.clicked.connect(open_photo)
    with qtbot.waitSignal(boundary.shown, timeout=5000) as shown:
        button.click()
    text = shown.args[0]
    assert text.startswith("/home/me/photo.png: permission denied.")
    assert "Traceback" not in text and "\n" not in text
    log = log_of(text).read_text()
    assert "Traceback" in log and "PermissionError" in log and "open_photo" in log
    assert log_of(text).is_relative_to(tmp_path / "cache")
    box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox))
    assert box.text() == text and box.isVisible()


def test_an_exception_in_a_worker_thread_reaches_the_gui_thread(
    qtbot: QtBot, boundary: ErrorBoundary
) -> None:
    def work() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/out.mp4")

    with qtbot.waitSignal(boundary.shown, timeout=5000) as shown:
        worker = threading.Thread(target=work, name="recorder")
        worker.start()
        worker.join(timeout=5)
    assert shown.args[0].startswith("/tmp/out.mp4: the disk is full")
    assert "thread recorder" in log_of(shown.args[0]).read_text()


def test_errors_while_a_box_is_open_are_logged_not_stacked(
    qtbot: QtBot, boundary: ErrorBoundary
) -> None:
    with qtbot.waitSignal(boundary.shown, timeout=5000):
        boundary.handle(ValueError("first"), context="test")
    boundary.handle(ValueError("second"), context="test")
    qtbot.waitUntil(lambda: len(boundary.messages) == 2, timeout=5000)
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]
    assert len([b for b in boxes if b.isVisible()]) == 1


@pytest.mark.parametrize("folder", ["config", "data", "data/avatars"])
def test_a_file_where_a_folder_must_be_stops_the_app_with_one_sentence(
    qtbot: QtBot, tmp_path: Path, folder: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / folder).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / folder).write_text("not a folder")
    seen: list[str] = []

    def close_the_box() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.isVisible():
                seen.append(widget.text())
                widget.done(0)

    poll = QTimer()
    poll.timeout.connect(close_the_box)
    poll.start(50)
    bound = QTimer()
    bound.setSingleShot(True)
    bound.timeout.connect(  # bounds the test only: what the box said decides it
        lambda: [w.reject() for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]
    )
    bound.start(20_000)
    try:
        assert desktop.run([]) == 1
    finally:
        poll.stop()
        bound.stop()
    env = "IMTALKER_CONFIG_DIR" if folder == "config" else "IMTALKER_DATA_DIR"
    if folder == "data/avatars":  # named by its path, as the app made it
        env = f"avatars folder {tmp_path / folder}"
    assert len(seen) == 1 and env in seen[0] and "is a file, not a folder" in seen[0]
    assert "Traceback" not in caplog.text
