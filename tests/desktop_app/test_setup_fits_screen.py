"""Offline, the model set-up dialog fits the screen's available area at 1366x768 and 1024x640
(issue 24, item 4): every button inside it, the texts scrolling inside when they must."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import close_session
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QApplication, QPushButton
from pytestqt.qtbot import QtBot

from desktop_app import theme
from desktop_app.model_setup import WINDOW_FRAME, ModelSetupDialog
from desktop_app.runtime_services.models import RuntimeModels
from runtime.model.download.model_download import DownloadOptions
from tests.support.hub_server import closed_port

TASK_BAR = 40


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    real = socket.getaddrinfo

    def loopback_only(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("127.0.0.1", "localhost", "::1", b"127.0.0.1"):
            raise OSError(f"test tried to reach {host}")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    close_session()
    yield
    close_session()


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (1024, 640)])
def test_offline_dialog_fits_the_screen(
    qtbot: QtBot, output_dir: Path, width: int, height: int
) -> None:
    theme.apply(QApplication.instance())  # type: ignore[arg-type]
    area = QRect(0, 0, width, height - TASK_BAR)
    options = DownloadOptions(
        endpoint=f"http://127.0.0.1:{closed_port()}", retry_wait=0.01, progress_interval=0.0
    )
    models = RuntimeModels(
        download_options=options, convert_command=[sys.executable, "-m", "unused"]
    )
    dialog = ModelSetupDialog(models, available=lambda: area)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.download_button.click()
    qtbot.waitUntil(lambda: not dialog.working, timeout=30_000)
    assert dialog.help.isVisible() and dialog.copy_links_button.isVisible()
    qtbot.wait(50)
    # The dialog and its window frame inside the available area.
    assert dialog.width() + WINDOW_FRAME.width() <= area.width()
    assert dialog.height() + WINDOW_FRAME.height() <= area.height()
    for button in dialog.findChildren(QPushButton):
        if not button.isVisible():
            continue
        box = QRect(button.mapTo(dialog, button.rect().topLeft()), button.size())
        assert dialog.rect().contains(box), (button.text(), box, dialog.rect())
        assert button.width() >= button.sizeHint().width(), button.text()  # text not cut
    shown = {b.text().replace("&", "") for b in dialog.findChildren(QPushButton) if b.isVisible()}
    assert {"Copy the links", "Import files…", "Later"} <= shown
    dialog.grab().save(str(output_dir / f"model_setup_offline_{width}x{height}.png"))
