"""Going live and saying how it goes, for the main window (GUI thread).

A mixin of `MainWindow`. Problems reach the window, not only the log: a source that cannot
open makes Go Live refuse with a message in the alert bar (and, for a webcam, the offer to
use the microphone); a source lost while live is shown at once with what the engine does
(retrying, with the attempt count, or stopped); a model that cannot load says so and offers
the set-up. The level meter follows the microphone 30 times a second from the capture side.
The virtual camera's state is in the status bar; "Check again" says what it found.
Output rate and new-picture rate are shown side by side (overlay and status bar); on a machine
measured not to be real time, Go Live first says what the user will get.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox

from desktop_app.live_bridge import LiveProblem, LiveState
from desktop_app.preview import PreviewStats
from desktop_app.services import (
    AudioLevel,
    LiveConfig,
    LiveStats,
    SourceHealth,
    VirtualCameraInfo,
)

if TYPE_CHECKING:
    from desktop_app.main_window import MainWindow

APPLY_NOTE_MIN_S = 1.0  # below this a change is seen "at once"

LIVE_TEXTS = {
    LiveState.IDLE: "Go Live",
    LiveState.STARTING: "Starting…",
    LiveState.LIVE: "Stop",
    LiveState.STOPPING: "Stopping…",
}


class LiveStatusMixin:
    def toggle_live(self: MainWindow) -> None:
        state = self.bridge.state
        if state in (LiveState.LIVE, LiveState.STARTING):
            self.bridge.stop()
        elif state == LiveState.IDLE:
            self.go_live()

    def go_live(self: MainWindow) -> bool:
        models = self.backend.models.model_state()
        remote = self.settings.compute.mode == "remote"  # the server has the model
        if not models.ready and not remote:
            self.open_model_setup()
            return False
        avatar_id = self.avatars.selected_id()
        if avatar_id is None:
            self.show_error("Add or pick an avatar first.")
            return False
        try:
            avatar = self._model_avatar(avatar_id, models.source_size)
        except (OSError, KeyError, ValueError) as exc:
            self.show_error(f"Cannot read that avatar: {exc}")
            return False
        if not self._accept_expectation():
            return False
        self.alerts.clear()
        self.source.set_live(True)
        s = self.settings
        self.bridge.start(
            LiveConfig(
                avatar=avatar,
                avatar_id=avatar_id,
                source=self.source.kind,
                microphone=self.source.microphone,
                webcam=self.source.webcam,
                pose=s.pose,
                quality=s.quality,
                output=s.output,
                virtual_camera=bool(self._vcam and self._vcam.available),
                call_audio=s.call_audio,
                compute=s.compute,
            )
        )
        return True

    def _accept_expectation(self: MainWindow) -> bool:
        """On a machine measured not to be real time: say what Go Live will give first."""
        expected = self.backend.engine.expectation()
        if expected is None:
            return True
        answer = QMessageBox.question(
            self,
            "Not real time on this machine",
            f"{expected}\n\nGo live anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    def use_microphone(self: MainWindow) -> None:
        """The alert's offer when the webcam cannot open: switch the source and go live."""
        self.source.mic_radio.setChecked(True)
        if self.bridge.state == LiveState.IDLE:
            self.go_live()

    # ---- state

    def _state_changed(self: MainWindow, state: LiveState) -> None:
        if state == LiveState.IDLE:
            self.source.set_live(False)
            self.preview.set_stats(None)
            self._show_still()
            self.provider_status.setText("")
            self._latency_s = None
            if self._relive_with_microphone:
                self._relive_with_microphone = False
                self.use_microphone()
        elif state == LiveState.STARTING:
            self.preview.clear_live("Starting… loading the model and your avatar")
        elif state == LiveState.LIVE:
            entry = self.gallery.get(self.avatars.selected_id() or "")
            self.live_info.setText(f"Live as {entry.name}" if entry else "Live")
        self._sync_live_ui()
        self._show_vcam(self._vcam)

    def _sync_live_ui(self: MainWindow) -> None:
        state = self.bridge.state
        live = state == LiveState.LIVE
        self.live_button.setText(LIVE_TEXTS[state])
        self.live_button.setAccessibleName("Stop" if state != LiveState.IDLE else "Go live")
        self.live_button.setProperty("live", state in (LiveState.LIVE, LiveState.STARTING))
        self.live_button.setEnabled(state != LiveState.STOPPING)
        self.live_button.style().unpolish(self.live_button)
        self.live_button.style().polish(self.live_button)
        self.record_button.setEnabled(live)
        self.snapshot_button.setEnabled(live or self.avatars.selected_id() is not None)
        if state == LiveState.IDLE:
            self.live_info.setText("")
            self.record_button.blockSignals(True)
            self.record_button.setChecked(False)
            self.record_button.blockSignals(False)

    def _stats_updated(self: MainWindow, stats: LiveStats) -> None:
        self.preview.set_stats(
            PreviewStats(
                fps=stats.fps,
                latency_ms=stats.latency_ms,
                provider=stats.provider,
                realtime=stats.realtime,
                unique_fps=stats.unique_fps,
                steps=stats.steps,
                remote=stats.remote,
            )
        )
        self._latency_s = None if stats.latency_ms is None else stats.latency_ms / 1000
        rates = f"{stats.fps:.1f} fps out"
        if stats.unique_fps is not None:
            rates += f", {stats.unique_fps:.1f} new pictures/s"
        steps = "" if stats.steps is None else f" · {stats.steps[0]} of {stats.steps[1]} steps"
        where = f"Running on {stats.provider}"
        if stats.remote is not None:
            where = f"Render server {stats.remote}"
            parts = []
            if stats.frame_format is not None:
                fmt = {"h264": "H.264"}.get(stats.frame_format, stats.frame_format.upper())
                rate = "" if stats.link_mbps is None else f" {stats.link_mbps:.1f} Mbit/s"
                parts.append(fmt + rate)
            if stats.network_ms is not None and stats.server_ms is not None:
                parts.append(f"network {stats.network_ms:.0f} ms, server {stats.server_ms:.0f} ms")
            if parts:
                where += f" ({', '.join(parts)})"
        self.provider_status.setText(
            f"{where} · {rates}" + ("" if stats.realtime else " (not real time)") + steps
        )
        if stats.expectation is not None:
            self.provider_status.setToolTip(stats.expectation)
        since = self._recording_since
        if self.bridge.recording is not None and since is not None:
            elapsed = int(time.monotonic() - since)
            note = "" if stats.realtime else " - not real time: the file will be a slideshow"
            self.statusBar().showMessage(
                f"● Recording {elapsed // 60}:{elapsed % 60:02d} to {self.bridge.recording}" + note
            )

    def _level_updated(self: MainWindow, level: AudioLevel) -> None:
        self.source.show_level(level)

    # ---- problems

    def _source_health(self: MainWindow, health: SourceHealth) -> None:
        if self.bridge.state not in (LiveState.STARTING, LiveState.LIVE):
            return
        if health.state in ("retrying", "stopped"):
            text = health.describe()
            self.live_info.setText(text)
            action = None
            if health.kind == "webcam":
                action = ("Use the microphone", self._switch_to_microphone)
            self.alerts.show_alert("source", text, severity="warning", action=action)
        elif health.state == "running" and self.alerts.topic == "source":
            self.alerts.clear("source")
            entry = self.gallery.get(self.avatars.selected_id() or "")
            self.live_info.setText(f"Live as {entry.name}" if entry else "Live")
            name = "microphone" if health.kind == "microphone" else "webcam"
            self.statusBar().showMessage(f"The {name} is back.", 6000)

    def _switch_to_microphone(self: MainWindow) -> None:
        """While live on a lost webcam: stop, choose the microphone, go live again."""
        if self.bridge.state == LiveState.IDLE:
            self.use_microphone()
            return
        self._relive_with_microphone = True
        self.bridge.stop()

    def _live_problem(self: MainWindow, problem: LiveProblem) -> None:
        if problem.topic == "source" and problem.source == "webcam":
            action = ("Use the microphone", self.use_microphone)
        elif problem.topic == "model":
            action = ("Model set-up…", self.open_model_setup)
        else:
            action = None
        self.alerts.show_alert(problem.topic, problem.message, severity="error", action=action)
        self.live_info.setText("")

    def _control_changed_live(self: MainWindow) -> None:
        """A control changed: while live with a long delay, say when it will be seen."""
        if self.bridge.state != LiveState.LIVE or self._latency_s is None:
            return
        if self._latency_s > APPLY_NOTE_MIN_S:
            self.controls.show_apply_note(self._latency_s)

    # ------------------------------------------------------------------ virtual camera

    def check_virtual_camera(self: MainWindow) -> None:
        self.bridge.check_virtual_camera()

    def recheck_virtual_camera(self: MainWindow) -> None:
        """ "Check again": says it is checking, then what it found (never silent)."""
        if self.bridge.state != LiveState.IDLE:
            self.statusBar().showMessage("The virtual camera is checked again after Stop.", 6000)
            return
        self._rechecking = True
        self.vcam_help.recheck.setEnabled(False)
        self.statusBar().showMessage("Checking for a virtual camera…")
        self.check_virtual_camera()

    def _show_vcam(self: MainWindow, info: VirtualCameraInfo | None) -> None:
        self._vcam = info
        if info is None:
            return
        if self._rechecking:
            self._rechecking = False
            self.vcam_help.recheck.setEnabled(True)
            found = f"Virtual camera found: {info.device or info.backend}"
            missing = f"Still no virtual camera ({info.reason or 'no backend'})."
            self.statusBar().showMessage(found if info.available else missing, 8000)
        state = self.bridge.state
        if info.available:
            name = info.device or info.backend or "virtual camera"
            doing = "sending" if state == LiveState.LIVE else "ready"
            self.vcam_status.setText(f"Virtual camera: {name} · {doing}")
            self.vcam_help.hide()
        else:
            self.vcam_status.setText("Virtual camera: not available · preview and recording only")
            self.vcam_help.set_reason(info.reason)
            if not self.settings.vcam_help_dismissed:
                self.vcam_help.show()

    def show_vcam_help(self: MainWindow) -> None:
        self.vcam_help.show()
        self.vcam_help.toggle.setChecked(True)

    def _vcam_help_dismissed(self: MainWindow) -> None:
        self._update_settings(vcam_help_dismissed=True)
