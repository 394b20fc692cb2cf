"""Call audio in the window: the virtual microphone on/off with its device and delay in use,
the gate threshold on the level meter, mute and the push-to-talk key, through the real window,
bridge and runtime engine (stub graphs, a fake microphone, fake pactl and output device)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.call_audio_panel import CallAudioPanel
from desktop_app.live_bridge import LiveState
from desktop_app.main_window import MainWindow
from desktop_app.settings import CallAudio
from runtime.media.virtual_mic import VirtualMic
from runtime.media.virtual_mic_device import PulseVirtualDevice
from tests.runtime.media.test_virtual_mic import FakeOutputSD, FakePactl
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import WindowFactory


def key(kind: QEvent.Type, k: Qt.Key, *, repeat: bool = False) -> QKeyEvent:
    return QKeyEvent(kind, k, Qt.KeyboardModifier.NoModifier, "", repeat)


def test_panel_values_and_push_to_talk_key(qtbot: QtBot) -> None:
    panel = CallAudioPanel(CallAudio())
    qtbot.addWidget(panel)
    values: list[CallAudio] = []
    talking: list[bool] = []
    panel.call_audio_changed.connect(values.append)
    panel.talking_changed.connect(talking.append)
    assert not panel.offset.isEnabled() and panel.gate_level.value() == -45
    panel.virtual_mic.setChecked(True)
    panel.offset.setValue(60)
    panel.gate_level.setValue(-40)
    assert values[-1] == CallAudio(virtual_mic=True, mic_offset_ms=60.0, gate_dbfs=-40.0)
    # Push-to-talk: F8 held anywhere in the app opens the microphone; auto-repeat is ignored;
    # leaving the app lets go.
    panel.push_to_talk.setChecked(True)
    assert values[-1].push_to_talk and "Hold F8" in panel.talk_state.text()
    app = QApplication.instance()
    assert app is not None
    app.sendEvent(panel.mute, key(QEvent.Type.KeyPress, Qt.Key.Key_F8))
    app.sendEvent(panel.mute, key(QEvent.Type.KeyPress, Qt.Key.Key_F8, repeat=True))
    assert talking == [True] and panel.talking and panel.talk_state.text() == "Talking."
    app.sendEvent(panel.mute, key(QEvent.Type.KeyRelease, Qt.Key.Key_F8))
    assert talking == [True, False]
    app.sendEvent(panel.mute, key(QEvent.Type.KeyPress, Qt.Key.Key_F9))  # not the key
    assert talking == [True, False]
    app.sendEvent(panel.mute, key(QEvent.Type.KeyPress, Qt.Key.Key_F8))
    app.sendEvent(app, QEvent(QEvent.Type.ApplicationDeactivate))
    assert talking == [True, False, True, False]
    panel.push_to_talk.setChecked(False)
    app.sendEvent(panel.mute, key(QEvent.Type.KeyPress, Qt.Key.Key_F8))
    assert talking == [True, False, True, False]  # the filter is gone with push-to-talk


def test_longest_delay_and_the_out_of_sync_note(qtbot: QtBot) -> None:
    """Issue 20: the cap on the voice's delay is a setting (with the virtual microphone), and
    while the video is further behind than it the panel says the lips are not in sync."""
    from desktop_app.services import VirtualMicInfo

    panel = CallAudioPanel(CallAudio())
    qtbot.addWidget(panel)
    values: list[CallAudio] = []
    panel.call_audio_changed.connect(values.append)
    assert not panel.max_delay.isEnabled() and panel.max_delay.value() == 1000
    panel.virtual_mic.setChecked(True)
    panel.max_delay.setValue(1500)
    assert values[-1].max_mic_delay_ms == 1500.0
    info = VirtualMicInfo(open=True, device="imtalker-cam Microphone", delay_ms=1500.0, reason=None)
    panel.show_virtual_mic(info, live=True)
    assert "not in sync" not in panel.vmic_state.text()
    late = VirtualMicInfo(
        open=True,
        device="imtalker-cam Microphone",
        delay_ms=1500.0,
        reason=None,
        out_of_sync="lips not in sync: video 3.3 s behind",
    )
    panel.show_virtual_mic(late, live=True)
    assert panel.vmic_state.text().endswith("· lips not in sync: video 3.3 s behind")


def test_virtual_mic_gate_and_mute_through_the_window(
    qtbot: QtBot, make_window: WindowFactory
) -> None:
    window: MainWindow = make_window()
    pactl, out = FakePactl(), FakeOutputSD()
    made: list[VirtualMic] = []

    def make_vmic(call: CallAudio) -> VirtualMic:
        made.append(VirtualMic(sd=out, device=PulseVirtualDevice(sd=out, pactl=pactl, pid=1)))
        return made[-1]

    window.backend.engine.make_virtual_mic = make_vmic  # type: ignore[attr-defined]
    panel = window.call_audio
    window.tabs.setCurrentIndex(1)
    # The gate threshold is on the level meter and follows the setting.
    assert window.source.level.gate_db == -45
    panel.gate_level.setValue(-38)
    assert window.source.level.gate_db == -38
    panel.gate.setChecked(False)
    assert window.source.level.gate_db is None
    panel.gate.setChecked(True)
    panel.virtual_mic.setChecked(True)
    assert window.settings.call_audio.virtual_mic and window.settings.call_audio.gate_dbfs == -38
    assert "appears while live" in panel.vmic_state.text()

    window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    assert made and pactl.ours() == ["module-null-sink", "module-remap-source"]
    qtbot.waitUntil(lambda: "delay in use" in panel.vmic_state.text(), timeout=10_000)
    qtbot.waitUntil(
        lambda: "ms" in panel.vmic_state.text().split("delay in use")[1], timeout=10_000
    )
    assert '"imtalker-cam Microphone"' in panel.vmic_state.text()
    engine = window.bridge._session.engine  # type: ignore[union-attr]
    assert engine.gate.threshold_dbfs == -38
    panel.gate_level.setValue(-50)
    assert engine.gate.threshold_dbfs == -50  # applied live
    # Mute: the switch closes; what the virtual microphone receives from then on is silence.
    qtbot.mouseClick(panel.mute, Qt.MouseButton.LeftButton)
    assert engine.mic.muted and "Muted" in panel.talk_state.text()
    qtbot.waitUntil(lambda: made[0]._line is not None, timeout=5_000)  # the first block came
    line = made[0]._line
    assert line is not None
    # A block already in the callback may still be loud: skip 0.1 s of audio.
    at_mute = line.written
    qtbot.waitUntil(lambda: line.written >= at_mute + line.rate // 10, timeout=5_000)
    mark = line.written
    qtbot.waitUntil(lambda: line.written > mark + 3000, timeout=5_000)
    assert np.all(line._data[np.arange(mark, line.written) % line._data.size] == 0)
    qtbot.mouseClick(panel.mute, Qt.MouseButton.LeftButton)
    assert not engine.mic.muted

    window.bridge.stop()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
    assert pactl.ours() == [] and out.streams[0].closed
    assert "appears while live" in panel.vmic_state.text()
