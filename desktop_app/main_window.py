"""The main window (GUI thread): avatars on the left, the live preview in the middle, source
and controls on the right, Go Live below the preview, the virtual camera in the status bar.

Everything slow happens elsewhere: the engine on the bridge's worker thread, model set-up on
the dialog's worker. The window builds the widgets and hands them, with a `WindowContext`
(the live bridge, the settings, the user messages), to controllers that own their state: the
chosen avatar (`avatar_flow`), going live and its problems (`live_status`), recording and
snapshots (`recording`), the virtual camera's status (`vcam_status`), call audio
(`call_audio_wiring`), where the model runs (`compute_choice`), the CUDA runtime's offer
(`cuda_offer`); the menus are
`window_menus.WindowMenus`. The window itself wires them together and keeps the controls'
settings and the model set-up dialog.

The layout fits a 1024x640 window: the side panels narrow (down to their minimum) before
anything is clipped, the settings scroll, the banners shorten, and buttons are never
narrower than their text in any of their states.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QByteArray, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.alerts import AlertBar
from desktop_app.avatar_flow import AvatarFlow
from desktop_app.avatar_panel import AvatarPanel, dropped_photo
from desktop_app.call_audio_panel import CallAudioPanel
from desktop_app.call_audio_wiring import CallAudioWiring
from desktop_app.compute_choice import ComputeChoice
from desktop_app.compute_panel import ComputePanel
from desktop_app.controls_panel import ControlsPanel
from desktop_app.cuda_offer import CudaOfferController
from desktop_app.gallery import Gallery
from desktop_app.live_bridge import EngineBridge, LiveState
from desktop_app.live_status import LIVE_TEXTS, LiveController, LiveWidgets
from desktop_app.model_setup import ModelSetupDialog
from desktop_app.panels import (
    DEFAULT_SIZE,
    MIN_SIZE,
    SidePanel,
    default_size,
    fit_text_width,
    scrolling,
)
from desktop_app.preview import PreviewWidget
from desktop_app.recording import (
    RECORD_TEXT,
    STOP_RECORD_TEXT,
    RecordingController,
    RecordingWidgets,
)
from desktop_app.services import Backend, ModelState
from desktop_app.settings import Output, Pose, Quality, Settings, SettingsStore
from desktop_app.source_panel import SourcePanel
from desktop_app.status_messages import fit_messages
from desktop_app.user_messages import WINDOW_TITLE, UserMessages
from desktop_app.vcam_help import VirtualCameraHelp
from desktop_app.vcam_status import VirtualCameraStatus
from desktop_app.window_context import WindowContext
from desktop_app.window_menus import MenuCommands, WindowMenus
from desktop_app.window_settings import WindowSettings

logger = logging.getLogger(__name__)

STATS_TEXT, STATS_ON_TEXT = "&Stats", "✓ &Stats"


class MainWindow(QMainWindow):
    def __init__(
        self,
        *,
        backend: Backend,
        settings_store: SettingsStore,
        gallery: Gallery,
        settings: Settings | None = None,
        notice: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.gallery = gallery
        self.setWindowTitle(WINDOW_TITLE)
        self.setAcceptDrops(True)
        self.setMinimumSize(MIN_SIZE)
        self.resize(DEFAULT_SIZE)
        self.messages = UserMessages(self)
        self.prefs = WindowSettings(
            settings_store, settings or Settings(), messages=self.messages, parent=self
        )
        self.bridge = EngineBridge(backend.engine, self)
        ctx = WindowContext(bridge=self.bridge, settings=self.prefs, messages=self.messages)
        self.model_dialog: ModelSetupDialog | None = None

        self._build(notice)
        self.avatar_flow = AvatarFlow(
            self.avatars,
            preview=self.preview,
            gallery=gallery,
            tools=backend.avatars,
            models=backend.models,
            ctx=ctx,
            dialog_parent=self,
        )
        self.vcam = VirtualCameraStatus(
            label=self.vcam_status, help_banner=self.vcam_help, ctx=ctx, parent=self
        )
        self.live = LiveController(
            LiveWidgets(
                live_button=self.live_button,
                live_info=self.live_info,
                provider_status=self.provider_status,
                avatars=self.avatars,
                source=self.source,
                controls=self.controls,
                preview=self.preview,
                alerts=self.alerts,
            ),
            ctx=ctx,
            engine=backend.engine,
            models=backend.models,
            gallery=gallery,
            vcam=self.vcam,
            avatar_flow=self.avatar_flow,
            open_model_setup=self.open_model_setup,
            edit_compute=self.edit_compute,
            dialog_parent=self,
        )
        self.recording = RecordingController(
            RecordingWidgets(
                record_button=self.record_button,
                snapshot_button=self.snapshot_button,
                preview=self.preview,
                avatars=self.avatars,
                alerts=self.alerts,
            ),
            ctx=ctx,
            gallery=gallery,
            dialog_parent=self,
        )
        self.call_audio_wiring = CallAudioWiring(
            self.call_audio, meter=self.source.level, ctx=ctx, parent=self
        )
        self.compute_choice = ComputeChoice(self.compute, ctx=ctx, parent=self)
        self.cuda_offer = CudaOfferController(backend.cuda, ctx=ctx, dialog_parent=self)
        self.menus = WindowMenus(
            self,
            MenuCommands(
                toggle_live=self.live.toggle,
                snapshot=self.recording.snapshot,
                reset_pose=self.reset_pose,
                open_model_setup=self.open_model_setup,
                fetch_cuda=self.cuda_offer.open_from_help,
                show_vcam_help=self.vcam.show_help,
                open_recordings_folder=self.recording.open_recordings_folder,
                choose_recordings_folder=self.recording.choose_recordings_folder,
            ),
            avatars=self.avatars,
            overlay_button=self.overlay_button,
            record_button=self.record_button,
            models=backend.models,
        )
        self.menus.actions.cuda.setVisible(self.cuda_offer.available)
        self._connect()
        self._tab_order()
        fit_messages(self.statusBar())  # a long message keeps its end ("…a slideshow")
        self._restore_geometry()
        self.avatar_flow.select_initial()
        self.live.sync()
        self.recording.sync()
        QTimer.singleShot(0, self.vcam.check)

    @property
    def settings(self) -> Settings:
        return self.prefs.settings

    # ------------------------------------------------------------------ layout

    def _build(self, notice: str | None) -> None:
        s = self.prefs.settings
        central = QWidget(self)
        # Left: avatars.
        self.avatars = AvatarPanel(self.gallery, central)
        left = SidePanel("Avatars", self.avatars, central, width=250, minimum=190)
        # Middle: problems, notices, preview, live controls.
        self.alerts = AlertBar(central)
        self.notice = QFrame(central)
        self.notice.setObjectName("NoticeBanner")
        self.notice_label = QLabel(notice or "", self.notice)
        self.notice_label.setWordWrap(True)
        self.notice_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        notice_close = QPushButton("OK", self.notice)
        notice_close.setAccessibleName("Dismiss the notice")
        notice_close.clicked.connect(self.notice.hide)
        row = QHBoxLayout(self.notice)
        row.setContentsMargins(12, 6, 8, 6)
        row.addWidget(self.notice_label, 1)
        row.addWidget(notice_close)
        self.notice.setVisible(bool(notice))
        self.vcam_help = VirtualCameraHelp(central)
        self.vcam_help.hide()
        self.preview = PreviewWidget(central)
        self.preview.set_overlay_visible(s.show_overlay)
        self.preview.set_output(s.output)

        self.live_button = QPushButton(LIVE_TEXTS[LiveState.IDLE], central)
        self.live_button.setObjectName("GoLive")
        self.live_button.setAccessibleName("Go live")
        self.live_button.setToolTip("Start or stop sending the avatar to the virtual camera  (F5)")
        self.record_button = QPushButton(RECORD_TEXT, central)
        self.record_button.setObjectName("Recording")
        self.record_button.setCheckable(True)
        self.record_button.setAccessibleName("Record to a video file")
        self.record_button.setToolTip("Record the live output with the microphone audio  (Ctrl+R)")
        self.snapshot_button = QPushButton("Snapshot", central)
        self.snapshot_button.setAccessibleName("Save a snapshot")
        self.snapshot_button.setToolTip("Save the current picture as a PNG  (Ctrl+Shift+S)")
        self.overlay_button = QPushButton(STATS_ON_TEXT if s.show_overlay else STATS_TEXT, central)
        self.overlay_button.setCheckable(True)
        self.overlay_button.setChecked(s.show_overlay)
        self.overlay_button.setAccessibleName("Show fps, latency and provider on the preview")
        self.overlay_button.setToolTip("Show fps, latency and provider on the preview  (Ctrl+I)")
        self.live_info = QLabel(central)
        self.live_info.setObjectName("Muted")
        self.live_info.setWordWrap(True)
        self.live_info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar = QHBoxLayout()
        bar.addWidget(self.live_button)
        bar.addSpacing(6)
        bar.addWidget(self.record_button)
        bar.addWidget(self.snapshot_button)
        bar.addWidget(self.overlay_button)
        bar.addWidget(self.live_info, 1)
        middle = QVBoxLayout()
        middle.addWidget(self.alerts)
        middle.addWidget(self.notice)
        middle.addWidget(self.vcam_help)
        middle.addWidget(self.preview, 1)
        middle.addLayout(bar)
        # Right: source and controls.
        self.source = SourcePanel(
            self.backend.devices,
            kind=s.source,
            microphone=s.microphone,
            webcam=s.webcam,
            audio_file=s.audio_file,
        )
        self.controls = ControlsPanel(pose=s.pose, quality=s.quality, output=s.output)
        self.controls.set_backend_unavailable(
            "openvino", self.backend.engine.backend_unavailable("openvino")
        )
        self.call_audio = CallAudioPanel(s.call_audio)
        controls_layout = self.controls.layout()  # under Output: what the call gets
        assert isinstance(controls_layout, QVBoxLayout)
        controls_layout.insertWidget(controls_layout.count() - 1, self.call_audio)
        self.compute = ComputePanel(s.compute)
        controls_layout.insertWidget(controls_layout.count() - 1, self.compute)
        self.tabs = QTabWidget(central)
        self.tabs.setAccessibleName("Source and controls")
        self.tabs.addTab(scrolling(self.source, self), "Source")
        self.controls_scroll = scrolling(self.controls, self)
        self.tabs.addTab(self.controls_scroll, "Controls")
        right = SidePanel("Settings", self.tabs, central, width=360, minimum=290)

        layout = QHBoxLayout(central)
        layout.setContentsMargins(8, 8, 8, 4)
        layout.setSpacing(8)
        layout.addWidget(left)
        layout.addLayout(middle, 1)
        layout.addWidget(right)
        self.setCentralWidget(central)

        for button, texts in (
            (self.live_button, tuple(LIVE_TEXTS.values())),
            (self.record_button, (RECORD_TEXT, STOP_RECORD_TEXT)),
            (self.snapshot_button, ("Snapshot",)),
            (self.overlay_button, (STATS_TEXT, STATS_ON_TEXT)),
        ):
            button.ensurePolished()
            fit_text_width(button, *texts)

        # Status bar: the virtual camera, the provider, the avatar.
        self.vcam_status = QLabel("Virtual camera: checking…", self)
        self.vcam_status.setAccessibleName("Virtual camera status")
        self.vcam_status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.provider_status = QLabel("", self)
        self.provider_status.setAccessibleName("Execution provider")
        self.statusBar().addWidget(self.vcam_status, 1)
        self.statusBar().addPermanentWidget(self.provider_status)

    def _tab_order(self) -> None:
        """Keyboard order: gallery, the live bar, then the settings tabs and the banners."""
        chain: list[QWidget] = [
            self.avatars.add_button,
            self.avatars.list,
            self.avatars.rename_button,
            self.avatars.recrop_button,
            self.avatars.delete_button,
            self.live_button,
            self.record_button,
            self.snapshot_button,
            self.overlay_button,
            self.tabs,
            *self.source.tab_chain(),
            *self.controls.tab_chain(),
            *self.call_audio.tab_chain(),
            *self.compute.tab_chain(),
            self.vcam_help.toggle,
            self.vcam_help.copy_command,
            self.vcam_help.recheck,
            self.vcam_help.hide_button,
            self.alerts.action_button,
            self.alerts.dismiss_button,
        ]
        for first, second in itertools.pairwise(chain):
            QWidget.setTabOrder(first, second)
        self.avatars.list.setFocus()

    def _connect(self) -> None:
        self.avatar_flow.chosen.connect(self.live.switch_avatar)
        self.overlay_button.toggled.connect(self._overlay_toggled)
        self.source.source_changed.connect(self._source_changed)
        # Its own signal: a path is not a microphone's name.
        self.source.file_source_chosen.connect(self._file_source_chosen)
        # The Hop list says the delay measured live for the choice in use.
        self.bridge.stats_updated.connect(
            lambda stats: self.controls.show_live_delay(stats.latency_ms)
        )
        self.controls.pose_changed.connect(self._pose_changed)
        self.controls.quality_changed.connect(self._quality_changed)
        self.controls.output_changed.connect(self._output_changed)
        self.bridge.frame_ready.connect(self.preview.show_frame)
        self.bridge.error.connect(self.messages.error)

    # ------------------------------------------------------------------ settings

    def _restore_geometry(self) -> None:
        s = self.prefs.settings
        if s.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode()))
        else:
            self.resize(default_size(self.screen().availableGeometry().size()))
        if s.window_state:
            self.restoreState(QByteArray.fromBase64(s.window_state.encode()))

    # ------------------------------------------------------------------ controls

    def _pose_changed(self, pose: Pose) -> None:
        self.bridge.set_pose(pose)
        self.prefs.update(replace(self.settings, pose=pose))
        self.live.control_changed()

    def _quality_changed(self, quality: Quality) -> None:
        self.bridge.set_quality(quality)
        self.prefs.update(replace(self.settings, quality=quality))
        self.live.control_changed()

    def _output_changed(self, output: Output) -> None:
        self.bridge.set_output(output)
        self.preview.set_output(output)
        self.prefs.update(replace(self.settings, output=output))

    def reset_pose(self) -> None:
        """Ctrl+0: Natural on, every slider centred; the status bar says so."""
        self.controls.reset()
        self.messages.status("Head pose and gaze reset: Natural on, sliders centred.", 5000)

    def _source_changed(self, kind: str, device: str | None) -> None:
        if kind == "webcam":
            self.prefs.update(replace(self.settings, source="webcam", webcam=device))
        else:
            self.prefs.update(replace(self.settings, source="microphone", microphone=device))

    def _file_source_chosen(self, path: Path) -> None:
        self.prefs.update(replace(self.settings, source="file", audio_file=str(path)))

    def _overlay_toggled(self, shown: bool) -> None:
        self.overlay_button.setText(STATS_ON_TEXT if shown else STATS_TEXT)
        self.preview.set_overlay_visible(shown)
        self.prefs.update(replace(self.settings, show_overlay=shown))

    def edit_compute(self) -> None:
        """Show the Compute group's server address, focused and selected for typing."""
        self.tabs.setCurrentIndex(self.tabs.indexOf(self.controls_scroll))
        self.controls_scroll.ensureWidgetVisible(self.compute)
        self.compute.url.setFocus()
        self.compute.url.selectAll()

    # ------------------------------------------------------------------ models

    def open_model_setup(self) -> ModelSetupDialog:
        if self.model_dialog is None:
            self.model_dialog = ModelSetupDialog(self.backend.models, self)
            self.model_dialog.finished.connect(self._model_dialog_closed)
        self.model_dialog.open()
        return self.model_dialog

    def _model_dialog_closed(self) -> None:
        dialog, self.model_dialog = self.model_dialog, None
        if dialog is not None:
            dialog.deleteLater()
        self._follow_model(self.backend.models.model_state())
        self.cuda_offer.check_at_startup()

    def check_models(self) -> None:
        """First run (or missing weights): open the set-up dialog; else the CUDA runtime's
        offer, when it would help (after the set-up otherwise: one dialog at a time)."""
        state = self.backend.models.model_state()
        self._follow_model(state)
        if not state.ready:
            self.open_model_setup()
        else:
            self.cuda_offer.check_at_startup()

    def _follow_model(self, state: ModelState) -> None:
        """What depends on the installed model version: the expressiveness default."""
        if state.default_cfg is not None:
            self.controls.set_model_default_cfg(state.default_cfg)

    # ------------------------------------------------------------------ drag and drop, closing

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_photo(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_photo(event)
        if path is not None:
            event.acceptProposedAction()
            QTimer.singleShot(0, lambda: self.avatar_flow.add_photo(path))

    def closeEvent(self, event: QCloseEvent) -> None:
        self.messages.closing = True
        self.source.stop_test()
        self.call_audio.stop_global_keys()
        if self.model_dialog is not None:
            self.model_dialog.reject()
        self.cuda_offer.close()
        self.bridge.shutdown()
        self.prefs.close(
            replace(
                self.settings,
                window_geometry=bytes(self.saveGeometry().toBase64().data()).decode(),
                window_state=bytes(self.saveState().toBase64().data()).decode(),
            )
        )
        event.accept()
