"""Refresh finds a microphone plugged in after start (issue 24, item 7): PortAudio keeps the
device list it made when it started, so Refresh restarts it (never under an open stream)."""

from __future__ import annotations

import numpy as np
from pytestqt.qtbot import QtBot

from desktop_app.runtime_services.devices import RuntimeDevices
from desktop_app.source_panel import SourcePanel
from tests.support.fakes.sound_device import FakeSoundDevice


def _panel(qtbot: QtBot) -> tuple[SourcePanel, FakeSoundDevice]:
    sound = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, name="Built-in Mic", loop=True)
    devices = RuntimeDevices(sd=sound, webcam_lister=lambda: [], platform="linux")
    panel = SourcePanel(devices, kind="microphone", microphone=None, webcam=None)
    qtbot.addWidget(panel)
    return panel, sound


def _labels(panel: SourcePanel) -> list[str]:
    return [panel.mic_combo.itemText(i) for i in range(1, panel.mic_combo.count())]


def test_refresh_lists_a_microphone_plugged_in_after_start(qtbot: QtBot) -> None:
    panel, sound = _panel(qtbot)
    assert _labels(panel) == ["Built-in Mic"]
    sound.plug_in_later("USB Headset")
    panel.refresh()  # re-reading PortAudio's list alone does not see it
    assert _labels(panel) == ["Built-in Mic"]
    panel.refresh_button.click()
    assert _labels(panel) == ["Built-in Mic", "USB Headset"]
    assert panel.status.text().startswith("2 microphones")
    assert sound.terminated == sound.initialized == 1


def test_refresh_stops_the_microphone_test_before_restarting_the_audio_system(
    qtbot: QtBot,
) -> None:
    panel, sound = _panel(qtbot)
    panel.test_button.click()
    assert panel.test_button.isChecked() and sound.streams and sound.streams[-1].active
    sound.plug_in_later("USB Headset")
    panel.refresh_button.click()
    assert not panel.test_button.isChecked()
    assert sound.streams[-1].closed  # the test stream is gone, not left on a dead library
    assert "USB Headset" in _labels(panel)


def test_no_restart_under_an_open_level_monitor(qtbot: QtBot) -> None:
    sound = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, loop=True)
    devices = RuntimeDevices(sd=sound, webcam_lister=lambda: [], platform="linux")
    monitor = devices.monitor_microphone(None, lambda level: None)
    try:
        devices.rescan()
        assert sound.terminated == 0
    finally:
        monitor.close()
    devices.rescan()
    assert sound.terminated == 1
