"""Window polish: unique keyboard mnemonics, controls that say why and when, friendly device
names remembered by a stable id, About box and shortcuts, and Qt's own state kept in the
app's config folder. The real window and widgets with hardware fakes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QDesktopServices
from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from desktop_app.model_setup import ModelSetupDialog
from desktop_app.runtime_services.devices import RuntimeDevices
from desktop_app.services import LiveStats
from desktop_app.source_panel import SourcePanel
from desktop_app.window_menus import MENU_LETTERS
from runtime.media.device_names import microphones
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.gui import mnemonics
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import WindowFactory, activate

# ---------------------------------------------------------------- item 5: mnemonics


def test_every_mnemonic_is_unique_and_menu_letters_open_menus(
    qtbot: QtBot, make_window: WindowFactory
) -> None:
    window = make_window(vcam_backend="fake-busy")  # the virtual-camera banner too
    window.alerts.show_alert("source", "test", action=("Use the microphone", lambda: None))
    claims = mnemonics(window)
    clashes = {letter: who for letter, who in claims.items() if len(who) > 1}
    assert clashes == {}
    menus = {letter for letter, who in claims.items() if who[0].startswith("menu")}
    assert menus == {m.lower() for m in MENU_LETTERS}
    assert len(claims) >= 20  # the controls kept their mnemonics
    # Each menu's own items are unique too.
    for action in window.menuBar().actions():
        letters = [
            a.text().split("&")[1][0].lower() for a in action.menu().actions() if "&" in a.text()
        ]
        assert len(letters) == len(set(letters)), action.text()


def test_model_dialog_mnemonics_are_unique(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    dialog = ModelSetupDialog(window.backend.models, window)
    qtbot.addWidget(dialog)
    assert {k: v for k, v in mnemonics(dialog).items() if len(v) > 1} == {}


# ---------------------------------------------------------------- item 6: controls


def test_natural_says_why_and_a_slider_takes_over(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    controls = window.controls
    window.tabs.setCurrentIndex(1)
    assert controls.natural.isChecked()
    assert controls.natural_hint.isVisible()
    assert "Move a slider" in controls.natural_hint.text()
    yaw = controls.pose_sliders["yaw"]
    assert yaw.isEnabled()  # dimmed, not disabled
    yaw.setFocus()
    qtbot.keyClick(yaw, Qt.Key.Key_PageUp)
    assert not controls.natural.isChecked()
    assert window.settings.pose.natural is False and window.settings.pose.yaw == 6
    assert "Tick Natural" in controls.natural_hint.text()

    # Ctrl+0 leaves one clear state: Natural on, sliders centred, and says so.
    activate(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert controls.natural.isChecked()
    assert all(s.value() == 0 for s in controls.pose_sliders.values())
    assert window.settings.pose.natural and window.settings.pose.yaw == 0
    assert "reset" in window.statusBar().currentMessage()


def test_a_change_while_live_says_when_it_will_show(
    qtbot: QtBot, make_window: WindowFactory
) -> None:
    window = make_window()
    window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    window.bridge._stats_timer.stop()  # only the stats below reach the window
    window.tabs.setCurrentIndex(1)
    slow = LiveStats(fps=25, latency_ms=4200, provider="CPU", realtime=False, audio_level=None)
    window.bridge.stats_updated.emit(slow)
    window.controls.pose_sliders["pitch"].setValue(5)
    assert window.controls.apply_note.isVisible()
    assert "about 4 s" in window.controls.apply_note.text()
    window.controls.apply_note.hide()
    fast = LiveStats(fps=25, latency_ms=300, provider="CUDA", realtime=True, audio_level=None)
    window.bridge.stats_updated.emit(fast)
    window.controls.pose_sliders["pitch"].setValue(7)
    assert not window.controls.apply_note.isVisible()  # under a second: no note
    window.bridge.stop()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)


def test_toggles_show_their_state_beyond_colour(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    stats, action = window.overlay_button, window.menus.actions.overlay
    assert action.isCheckable() and action.isChecked() == stats.isChecked()
    assert stats.text().startswith("✓")
    stats.click()
    assert not stats.text().startswith("✓") and not action.isChecked()
    action.trigger()  # the View menu item
    assert stats.isChecked() and stats.text().startswith("✓") and window.preview.overlay_visible
    test = window.source.test_button
    test.click()
    assert test.text().replace("&", "") == "Stop"
    test.click()
    assert test.text().replace("&", "") == "Test"


# ---------------------------------------------------------------- item 7: device names


LINUX_PORTAUDIO = [
    {"name": "HDA Intel PCH: ALC257 Analog (hw:0,0)", "max_input_channels": 2, "hostapi": 0},
    {"name": "HDA Intel PCH: HDMI 0 (hw:0,3)", "max_input_channels": 0, "hostapi": 0},
    {"name": "Blue Yeti: USB Audio (hw:1,0)", "max_input_channels": 2, "hostapi": 0},
    {"name": "sysdefault", "max_input_channels": 128, "hostapi": 0},
    {"name": "pulse", "max_input_channels": 32, "hostapi": 0},
    {"name": "default", "max_input_channels": 32, "hostapi": 0},
]
PULSE_SOURCES = [
    {
        "name": "alsa_output.pci-0000_00_1f.3.analog-stereo.monitor",
        "description": "Monitor of Built-in Audio Analog Stereo",
        "monitor_of_sink": "alsa_output.pci",
    },
    {
        "name": "alsa_input.pci-0000_00_1f.3.analog-stereo",
        "description": "Built-in Audio Analog Stereo",
        "monitor_of_sink": "n/a",
    },
    {
        "name": "alsa_input.usb-Blue_Microphones_Yeti-00.analog-stereo",
        "description": "Yeti Stereo Microphone Analog Stereo",
        "monitor_of_sink": "n/a",
    },
]


class ListingSoundDevice(FakeSoundDevice):
    """A fake sound card whose PortAudio list is a real Linux machine's (ALSA aliases and all)."""

    def __init__(self, listed: list[dict[str, Any]]) -> None:
        super().__init__(np.zeros(1600, np.float32), 16_000, loop=True)
        self.listed = listed
        self.default = SimpleNamespace(device=(5, 5))  # "default"

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if device is None and kind is None:
            return [dict(d, default_samplerate=48_000.0) for d in self.listed]
        return super().query_devices(device, kind)

    def query_hostapis(self) -> list[dict[str, Any]]:
        return [{"name": "ALSA"}]


def fake_pactl(args: Sequence[str]) -> str:
    if list(args[-2:]) == ["list", "sources"]:
        return json.dumps(PULSE_SOURCES)
    assert list(args) == ["pactl", "get-default-source"]
    return "alsa_input.pci-0000_00_1f.3.analog-stereo\n"


def test_microphones_by_description_once_remembered_by_id(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSE_SOURCE", "the-users-own")  # restored after the test
    devices = RuntimeDevices(
        sd=ListingSoundDevice(LINUX_PORTAUDIO), pactl=fake_pactl, platform="linux"
    )
    panel = SourcePanel(devices, kind="microphone", microphone=None, webcam=None)
    qtbot.addWidget(panel)
    combo = panel.mic_combo
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert labels == [
        "System default (Built-in Audio Analog Stereo)",
        "Built-in Audio Analog Stereo",
        "Yeti Stereo Microphone Analog Stereo",
    ]
    chosen: list[Any] = []
    panel.source_changed.connect(lambda kind, device: chosen.append(device))
    combo.setCurrentIndex(2)
    yeti = "pulse:alsa_input.usb-Blue_Microphones_Yeti-00.analog-stereo"
    assert chosen == [yeti] and panel.microphone == yeti
    # Next run: the same device is chosen by its id, wherever it now sits in the list.
    again = SourcePanel(devices, kind="microphone", microphone=yeti, webcam=None)
    qtbot.addWidget(again)
    assert again.microphone == yeti and "Yeti" in again.mic_combo.currentText()
    # Opening it goes through the sound server, naming the source.
    assert devices.resolve_microphone(yeti) == "pulse"
    assert os.environ["PULSE_SOURCE"] == yeti.removeprefix("pulse:")
    assert devices.resolve_microphone(None) is None  # the system default again
    assert "PULSE_SOURCE" not in os.environ


def test_without_a_sound_server_the_alsa_cards_are_listed_without_aliases() -> None:
    found = microphones(LINUX_PORTAUDIO, [{"name": "ALSA"}], pulse=None, platform="linux")
    assert [m.label for m in found] == ["HDA Intel PCH: ALC257 Analog", "Blue Yeti: USB Audio"]
    assert found[1].id == "Blue Yeti: USB Audio (hw:1,0)"


def test_windows_endpoints_once_with_their_full_names() -> None:
    hostapis = [{"name": "MME"}, {"name": "Windows DirectSound"}, {"name": "Windows WASAPI"}]
    full = "Microphone Array (Realtek(R) Audio)"
    listed = [
        {"name": "Microsoft Sound Mapper - Input", "max_input_channels": 2, "hostapi": 0},
        {"name": full[:31], "max_input_channels": 2, "hostapi": 0},
        {"name": "Primary Sound Capture Driver", "max_input_channels": 2, "hostapi": 1},
        {"name": full, "max_input_channels": 2, "hostapi": 1},
        {"name": full, "max_input_channels": 2, "hostapi": 2},
        {"name": "Headset (Jabra Evolve 65)", "max_input_channels": 1, "hostapi": 2},
    ]
    found = microphones(listed, hostapis, pulse=None, platform="win32")
    assert [m.label for m in found] == [full, "Headset (Jabra Evolve 65)"]
    assert found[0].id == f"wasapi:{full}" and found[0].device == f"{full}, Windows WASAPI"


# ---------------------------------------------------------------- item 9 and 10


def test_about_box_and_shortcuts(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    window.menus.actions.about.trigger()
    assert window.menus.about_box is not None and window.menus.about_box.isVisible()
    text = window.menus.about_box.text()
    assert "Apache-2.0" in text and "huggingface.co/cbsjtu01/IMTalker" in text
    assert "Installed:</b> IMTalker v1" in text  # the stub graphs carry no version: v1
    window.menus.about_box.close()
    window.menus.actions.shortcuts.trigger()
    assert window.menus.shortcuts_dialog is not None
    assert "Ctrl+Shift+S" in window.menus.shortcuts_dialog.findChild(type(window.live_info)).text()
    window.menus.shortcuts_dialog.close()


def test_idle_preview_shows_what_the_camera_sends(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    picture = window.preview.idle_picture
    assert picture is not None and picture.width() * 9 == picture.height() * 16  # 1280x720
    assert "1280 × 720" in window.preview.caption()
    window.controls.resolution.setCurrentIndex(window.controls.resolution.findData("640x480"))
    window.controls.mirror.setChecked(True)
    picture = window.preview.idle_picture
    assert picture is not None and picture.width() * 3 == picture.height() * 4
    assert "640 × 480" in window.preview.caption() and "mirrored" in window.preview.caption()


def test_qt_keeps_its_own_state_in_the_app_config_folder(
    qtbot: QtBot, make_window: WindowFactory, app_dirs: Path
) -> None:
    make_window()
    qt = QSettings(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, "QtProject")
    assert Path(qt.fileName()).is_relative_to(app_dirs / "config")


def test_check_again_and_open_folder_give_feedback(
    qtbot: QtBot, make_window: WindowFactory, app_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window(vcam_backend="fake-busy")
    qtbot.waitUntil(window.vcam_help.isVisible, timeout=5_000)
    window.vcam_help.recheck.click()
    assert "Checking" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: "Still no virtual camera" in window.statusBar().currentMessage())
    assert window.vcam_help.recheck.isEnabled()

    # A desktop without a file manager: the folder's path is said in the window instead.
    window.prefs.update(replace(window.settings, recordings_dir=str(app_dirs / "rec")))
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: False)
    shown: list[str] = []
    monkeypatch.setattr(window.messages, "error", shown.append)
    assert not window.recording.open_recordings_folder()
    assert shown and str(app_dirs / "rec") in shown[0] and "No file manager" in shown[0]
