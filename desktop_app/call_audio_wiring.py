"""Call audio (GUI thread): the Call audio group's changes go to the settings and the running
session, the gate threshold onto the level meter, and the session's virtual-microphone state
back into the group."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject

from desktop_app.call_audio_panel import CallAudioPanel
from desktop_app.level_meter import LevelMeter
from desktop_app.live_bridge import LiveState
from desktop_app.services import LiveStats
from desktop_app.settings import CallAudio
from desktop_app.window_context import WindowContext


class CallAudioWiring(QObject):
    def __init__(
        self,
        panel: CallAudioPanel,
        *,
        meter: LevelMeter,
        ctx: WindowContext,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._panel = panel
        self._meter = meter
        self._ctx = ctx
        panel.call_audio_changed.connect(self._changed)
        panel.muted_changed.connect(ctx.bridge.set_muted)
        panel.talking_changed.connect(ctx.bridge.set_talking)
        ctx.bridge.stats_updated.connect(self._stats)
        ctx.bridge.state_changed.connect(self._state)
        self._show_gate(panel.value)

    def _changed(self, call_audio: CallAudio) -> None:
        self._ctx.bridge.set_call_audio(call_audio)
        self._show_gate(call_audio)
        self._ctx.settings.update(replace(self._ctx.settings.settings, call_audio=call_audio))

    def _show_gate(self, call_audio: CallAudio) -> None:
        self._meter.set_gate(call_audio.gate_dbfs if call_audio.gate else None)

    def _stats(self, stats: LiveStats) -> None:
        self._panel.show_virtual_mic(stats.virtual_mic, live=True)

    def _state(self, state: LiveState) -> None:
        if state == LiveState.IDLE:
            self._panel.show_virtual_mic(None, live=False)
