"""The window with "Compute: remote server": the setting is kept, Go Live renders on the server
(no model needed here), and while the server is away the preview keeps the last frame under a
"reconnecting" badge, then moves on when it is back. The server is the real session code
(`runtime.server.connection`) on an in-process WebSocket server (Ray is tested elsewhere);
hardware is faked as in the other window tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from desktop_app.settings import Compute, Settings, SettingsStore
from runtime.model.execution.model_set import open_model_set
from runtime.model.versions import V2
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import WindowFactory
from tests.support.live import CPU
from tests.support.remote import TOKEN, InProcessServer, serving
from tests.support.stub_graphs import write_stub_graphs


@pytest.fixture(scope="module")
def render_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    models = open_model_set(
        write_stub_graphs(tmp_path_factory.mktemp("server_graphs"), version=V2), options=CPU
    )
    with serving(models, capacity=2) as server:
        yield server


def test_compute_setting_is_kept_and_checked(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    wanted = Settings(compute=Compute(mode="remote", url="wss://gpu.example", token=TOKEN))
    store.save(wanted)
    assert store.load() == (wanted, None)
    (tmp_path / "settings.json").write_text(
        '{"version": 1, "settings": {"compute": {"mode": "cloud", "url": "http://x"}}}'
    )
    loaded, notice = store.load()
    assert loaded.compute == Compute()
    assert notice is not None and "compute.mode" in notice and "compute.url" in notice


def test_live_on_a_render_server_with_a_reconnecting_badge(
    qtbot: QtBot, make_window: WindowFactory, render_server: InProcessServer, tmp_path: Path
) -> None:
    # No model installed here: the server has it.
    window = make_window(graphs_dir=tmp_path / "no-model-here")
    panel = window.compute
    panel.remote.setChecked(True)
    panel.url.setText(render_server.url)
    panel.token.setText(TOKEN)
    panel.token.editingFinished.emit()
    assert window.settings.compute == Compute(mode="remote", url=render_server.url, token=TOKEN)

    assert window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    qtbot.waitUntil(lambda: window.preview.frames_shown > 10, timeout=20_000)
    qtbot.waitUntil(
        lambda: window.provider_status.text().startswith("Render server connected"),
        timeout=10_000,
    )
    # The frame format and the measured rate (auto: JPEG on loopback).
    qtbot.waitUntil(
        lambda: re.search(r"\(JPEG \d+\.\d Mbit/s", window.provider_status.text()) is not None,
        timeout=10_000,
    )
    assert window.preview.badge_text() == ""

    render_server.stop()
    qtbot.waitUntil(
        lambda: window.preview.badge_text() == "Reconnecting to the render server…",
        timeout=10_000,
    )
    assert window.preview.current_frame is not None  # the last frame stays up
    shown = window.preview.frames_shown

    render_server.start()
    qtbot.waitUntil(lambda: window.preview.badge_text() == "", timeout=10_000)
    qtbot.waitUntil(lambda: window.preview.frames_shown > shown + 10, timeout=10_000)
    window.live.toggle()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
