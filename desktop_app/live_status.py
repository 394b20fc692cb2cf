"""Going live and saying how it goes (GUI thread).

Problems reach the window, not only the log: a source that cannot open makes Go Live refuse
with a message in the alert bar (and, for a webcam, the offer to use the microphone); a source
lost while live is shown at once with what the engine does (retrying, with the attempt count,
or stopped); a model that cannot load says so and offers the set-up. The level meter follows
the microphone 30 times a second from the capture side. Output rate and new-picture rate are
shown side by side (overlay and status bar). On a machine measured not to be real time (by the
last session, or else by the set-up's timing run of the same graphs), Go Live says what the
user will get and the way out (a GPU, a render server, offline render) once the source has
opened, before anything starts; never when a render server does the work. A render server that
cannot be reached is said with its attempts (`remote_notice`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel, QMessageBox, QPushButton, QWidget

from desktop_app.alerts import AlertBar
from desktop_app.avatar_flow import AvatarFlow
from desktop_app.avatar_panel import AvatarPanel
from desktop_app.controls_panel import ControlsPanel
from desktop_app.gallery import Gallery
from desktop_app.live_bridge import LiveProblem, LiveState
from desktop_app.preview import PreviewStats, PreviewWidget
from desktop_app.remote_notice import RemoteNotice
from desktop_app.services import (
    AudioLevel,
    LiveConfig,
    LiveEngine,
    LiveStats,
    Models,
    SourceHealth,
)
from desktop_app.source_panel import SourcePanel
from desktop_app.vcam_status import VirtualCameraStatus
from desktop_app.window_context import WindowContext

APPLY_NOTE_MIN_S = 1.0  # below this a change is seen "at once"

LIVE_TEXTS = {
    LiveState.IDLE: "Go Live",
    LiveState.STARTING: "Starting…",
    LiveState.LIVE: "Stop",
    LiveState.STOPPING: "Stopping…",
}


@dataclass(frozen=True)
class LiveWidgets:
    live_button: QPushButton
    live_info: QLabel
    provider_status: QLabel
    avatars: AvatarPanel
    source: SourcePanel
    controls: ControlsPanel
    preview: PreviewWidget
    alerts: AlertBar


class LiveController(QObject):
    def __init__(
        self,
        widgets: LiveWidgets,
        *,
        ctx: WindowContext,
        engine: LiveEngine,
        models: Models,
        gallery: Gallery,
        vcam: VirtualCameraStatus,
        avatar_flow: AvatarFlow,
        open_model_setup: Callable[[], object],
        edit_compute: Callable[[], object],
        dialog_parent: QWidget,
    ) -> None:
        super().__init__(dialog_parent)
        self._w = widgets
        self._ctx = ctx
        self._engine = engine
        self._models = models
        self._gallery = gallery
        self._vcam = vcam
        self._avatar_flow = avatar_flow
        self._open_model_setup = open_model_setup
        self._dialog_parent = dialog_parent
        self._latency_s: float | None = None
        self._relive_with_microphone = False
        self._edit_compute = edit_compute
        self._remote = RemoteNotice(
            alerts=widgets.alerts, preview=widgets.preview, edit=self._stop_and_edit_compute
        )
        widgets.live_button.clicked.connect(self.toggle)
        ctx.bridge.state_changed.connect(self._state_changed)
        ctx.bridge.stats_updated.connect(self.show_stats)
        ctx.bridge.problem.connect(self._live_problem)
        ctx.bridge.source_health.connect(self._source_health)
        ctx.bridge.level_updated.connect(self._level_updated)
        ctx.bridge.avatar_switched.connect(self._avatar_switched)

    def toggle(self) -> None:
        state = self._ctx.bridge.state
        if state in (LiveState.LIVE, LiveState.STARTING):
            self._ctx.bridge.stop()
        elif state == LiveState.IDLE:
            self.go_live()

    def go_live(self) -> bool:
        models = self._models.model_state()
        s = self._ctx.settings.settings
        remote = s.compute.mode == "remote"  # the server has the model
        if not models.ready and not remote:
            self._open_model_setup()
            return False
        avatar_id = self._w.avatars.selected_id()
        if avatar_id is None:
            self._ctx.messages.error("Add or pick an avatar first.")
            return False
        try:
            avatar = self._avatar_flow.model_avatar(avatar_id, models.source_size)
        except (OSError, KeyError, ValueError) as exc:
            self._ctx.messages.error(f"Cannot read that avatar: {exc}")
            return False
        # A render server's speed is not this machine's: no question then.
        expected = None if remote else self._engine.expectation(s.quality)
        confirm = None if expected is None else lambda: self._accept_expectation(expected)
        self._w.alerts.clear()
        source = self._w.source
        source.set_live(True)
        self._ctx.bridge.start(
            LiveConfig(
                avatar=avatar,
                avatar_id=avatar_id,
                source=source.kind,
                microphone=source.microphone,
                webcam=source.webcam,
                audio_file=source.audio_file,
                pose=s.pose,
                quality=s.quality,
                output=s.output,
                virtual_camera=self._vcam.available,
                call_audio=s.call_audio,
                compute=s.compute,
            ),
            confirm=confirm,
        )
        return True

    def _accept_expectation(self, expected: str) -> bool:
        """On a machine measured not to be real time, once the source has opened: say what
        Go Live will give, and the way out, before it starts."""
        answer = QMessageBox.question(
            self._dialog_parent,
            "Not real time on this machine",
            f"{expected}\n\nGo live anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    def use_microphone(self) -> None:
        """The alert's offer when the webcam cannot open: switch the source and go live."""
        self._w.source.mic_radio.setChecked(True)
        if self._ctx.bridge.state == LiveState.IDLE:
            self.go_live()

    def switch_avatar(self, avatar_id: str) -> None:
        """While live (or starting), send the newly chosen avatar to the session."""
        if self._ctx.bridge.state not in (LiveState.STARTING, LiveState.LIVE):
            return
        try:
            avatar = self._avatar_flow.model_avatar(avatar_id, None)
        except (OSError, KeyError, ValueError) as exc:
            self._ctx.messages.error(f"Cannot read that avatar: {exc}")
            return
        self._ctx.bridge.switch_avatar(avatar_id, avatar)
        self._w.live_info.setText("Switching avatar…")

    def _avatar_switched(self, avatar_id: str) -> None:
        entry = self._gallery.get(avatar_id)
        self._w.live_info.setText(f"Live as {entry.name}" if entry else "")

    # ---- state

    def _state_changed(self, state: LiveState) -> None:
        w = self._w
        if state == LiveState.IDLE:
            w.source.set_live(False)
            w.preview.set_stats(None)
            self._avatar_flow.show_still()
            w.provider_status.setText("")
            self._latency_s = None
            self._remote.clear()
            if self._relive_with_microphone:
                self._relive_with_microphone = False
                self.use_microphone()
        elif state == LiveState.STARTING:
            w.preview.clear_live("Starting… loading the model and your avatar")
        elif state == LiveState.LIVE:
            self._show_live_as()
        self.sync()

    def sync(self) -> None:
        """The Go Live button and the live line for the bridge's state."""
        state = self._ctx.bridge.state
        button = self._w.live_button
        button.setText(LIVE_TEXTS[state])
        button.setAccessibleName("Stop" if state != LiveState.IDLE else "Go live")
        button.setProperty("live", state in (LiveState.LIVE, LiveState.STARTING))
        button.setEnabled(state != LiveState.STOPPING)
        button.style().unpolish(button)
        button.style().polish(button)
        if state == LiveState.IDLE:
            self._w.live_info.setText("")

    def _show_live_as(self) -> None:
        entry = self._gallery.get(self._w.avatars.selected_id() or "")
        self._w.live_info.setText(f"Live as {entry.name}" if entry else "Live")

    def show_stats(self, stats: LiveStats) -> None:
        self._remote.follow(stats)
        self._w.preview.set_stats(
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
        status = self._w.provider_status
        status.setText(
            f"{where} · {rates}" + ("" if stats.realtime else " (not real time)") + steps
        )
        if stats.expectation is not None:
            status.setToolTip(stats.expectation)

    def _level_updated(self, level: AudioLevel) -> None:
        self._w.source.show_level(level)

    # ---- problems

    def _source_health(self, health: SourceHealth) -> None:
        if self._ctx.bridge.state not in (LiveState.STARTING, LiveState.LIVE):
            return
        alerts = self._w.alerts
        if health.state in ("retrying", "stopped"):
            text = health.describe()
            self._w.live_info.setText(text)
            action = None
            if health.kind == "webcam":
                action = ("Use the microphone", self._switch_to_microphone)
            alerts.show_alert("source", text, severity="warning", action=action)
        elif health.state == "running" and alerts.topic == "source":
            alerts.clear("source")
            self._show_live_as()
            name = {"microphone": "microphone", "webcam": "webcam"}.get(health.kind, "audio file")
            self._ctx.messages.status(f"The {name} is back.", 6000)

    def _switch_to_microphone(self) -> None:
        """While live on a lost webcam: stop, choose the microphone, go live again."""
        if self._ctx.bridge.state == LiveState.IDLE:
            self.use_microphone()
            return
        self._relive_with_microphone = True
        self._ctx.bridge.stop()

    def _live_problem(self, problem: LiveProblem) -> None:
        action: tuple[str, Callable[[], object]] | None = None
        if problem.topic == "source" and problem.source == "webcam":
            action = ("Use the microphone", self.use_microphone)
        elif problem.topic == "model":
            action = ("Model set-up…", self._open_model_setup)
        self._w.alerts.show_alert(problem.topic, problem.message, severity="error", action=action)
        self._w.live_info.setText("")

    def _stop_and_edit_compute(self) -> None:
        """The unreachable server's alert: the address applies from the next Go Live."""
        self._ctx.bridge.stop()
        self._edit_compute()

    def control_changed(self) -> None:
        """A control changed: while live with a long delay, say when it will be seen."""
        if self._ctx.bridge.state != LiveState.LIVE or self._latency_s is None:
            return
        if self._latency_s > APPLY_NOTE_MIN_S:
            self._w.controls.show_apply_note(self._latency_s)
