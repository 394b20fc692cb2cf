"""The main window's call-audio wiring (GUI thread): the Call audio group's changes go to the
settings and the running session, the gate threshold onto the level meter, and the session's
virtual-microphone state back into the group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from desktop_app.live_bridge import LiveState
from desktop_app.services import LiveStats
from desktop_app.settings import CallAudio

if TYPE_CHECKING:
    from desktop_app.main_window import MainWindow


class CallAudioMixin:
    def _connect_call_audio(self: MainWindow) -> None:
        panel = self.call_audio
        panel.call_audio_changed.connect(self._call_audio_changed)
        panel.muted_changed.connect(self.bridge.set_muted)
        panel.talking_changed.connect(self.bridge.set_talking)
        self.bridge.stats_updated.connect(self._call_audio_stats)
        self.bridge.state_changed.connect(self._call_audio_state)
        self._show_gate(panel.value)

    def _call_audio_changed(self: MainWindow, call_audio: CallAudio) -> None:
        self.bridge.set_call_audio(call_audio)
        self._show_gate(call_audio)
        self._update_settings(call_audio=call_audio)

    def _show_gate(self: MainWindow, call_audio: CallAudio) -> None:
        self.source.level.set_gate(call_audio.gate_dbfs if call_audio.gate else None)

    def _call_audio_stats(self: MainWindow, stats: LiveStats) -> None:
        self.call_audio.show_virtual_mic(stats.virtual_mic, live=True)

    def _call_audio_state(self: MainWindow, state: LiveState) -> None:
        if state == LiveState.IDLE:
            self.call_audio.show_virtual_mic(None, live=False)
