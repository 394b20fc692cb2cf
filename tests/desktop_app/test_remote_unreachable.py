"""A render server that cannot be reached: within a few seconds of Go Live the window says so
("cannot reach the render server at ...: connection refused (attempt N, retrying in M s)"),
counts the attempts, and offers to stop and edit the address; it never stays "Starting…" with
no word, and this machine's own slowness is not asked about first. The server address is a
closed port on this machine (bound, then closed), so every attempt is refused at once; nothing
leaves the machine."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from desktop_app.main_window import MainWindow
from desktop_app.remote_notice import EDIT_TEXT
from tests.support.bench_results import write_slow_bench
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.hub_server import closed_port
from tests.support.remote import TOKEN

WAIT_MS = 5_000
"""The bound on "within a few seconds" (a refused attempt fails at once)."""


def use_server(window: MainWindow, url: str) -> None:
    panel = window.compute
    panel.remote.setChecked(True)
    panel.url.setText(url)
    panel.token.setText(TOKEN)
    panel.token.editingFinished.emit()


def test_an_unreachable_render_server_is_said_with_its_attempts(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox

    asked: list[str] = []

    def question(parent: object, title: str, text: str, *args: object) -> Any:
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", question)
    graphs = window.backend.models.model_state().graphs_dir
    assert graphs is not None
    write_slow_bench(graphs)  # this computer is far from real time: no matter with a server
    url = f"ws://127.0.0.1:{closed_port()}"
    use_server(window, url)
    said = re.compile(
        rf"^Cannot reach the render server at {re.escape(url)}: connection refused "
        r"\(attempt (\d+), retrying in \d+(\.\d)? s\)\.$"
    )

    def attempt() -> int:
        found = said.match(window.alerts.text())
        return int(found.group(1)) if found else 0

    assert window.live.go_live()
    qtbot.waitUntil(lambda: attempt() > 0, timeout=WAIT_MS)
    assert window.bridge.state == LiveState.LIVE and window.live_button.text() == "Stop"
    assert asked == []
    assert window.alerts.action_button.text() == EDIT_TEXT
    first = attempt()
    qtbot.waitUntil(lambda: attempt() > first, timeout=WAIT_MS)  # it keeps trying, counted

    window.alerts.action_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
    assert window.alerts.text() == ""
    assert window.tabs.currentWidget() is window.controls_scroll
    assert window.focusWidget() is window.compute.url
    assert window.compute.url.selectedText() == url
