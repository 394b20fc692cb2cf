"""Recording, snapshots and the recordings folder (GUI thread).

The recordings folder is the user's choice (File › Choose recordings folder…, kept in the
settings) or Videos/imtalker-cam; opening it says what happened, also when no file manager
can be launched. While recording, the status bar counts the time at every stats update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QUrl
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QFileDialog, QPushButton, QWidget

from desktop_app.alerts import AlertBar
from desktop_app.avatar_panel import AvatarPanel
from desktop_app.gallery import Gallery
from desktop_app.live_bridge import LiveState
from desktop_app.preview import PreviewWidget
from desktop_app.services import LiveStats
from desktop_app.window_context import WindowContext

RECORD_TEXT = "● &Record"
STOP_RECORD_TEXT = "■ Stop &recording"


@dataclass(frozen=True)
class RecordingWidgets:
    record_button: QPushButton
    snapshot_button: QPushButton
    preview: PreviewWidget
    avatars: AvatarPanel
    alerts: AlertBar


class RecordingController(QObject):
    def __init__(
        self,
        widgets: RecordingWidgets,
        *,
        ctx: WindowContext,
        gallery: Gallery,
        dialog_parent: QWidget,
    ) -> None:
        super().__init__(dialog_parent)
        self._w = widgets
        self._ctx = ctx
        self._gallery = gallery
        self._dialog_parent = dialog_parent
        self._recording_since: float | None = None  # time.monotonic() when recording began
        widgets.record_button.toggled.connect(self._record_toggled)
        widgets.snapshot_button.clicked.connect(self.snapshot)
        ctx.bridge.recording_changed.connect(self._recording_changed)
        ctx.bridge.stats_updated.connect(self._show_elapsed)
        ctx.bridge.state_changed.connect(self.sync)

    def sync(self) -> None:
        """The buttons for the bridge's state: record only while live, snapshot while live or
        with an avatar chosen."""
        state = self._ctx.bridge.state
        live = state == LiveState.LIVE
        self._w.record_button.setEnabled(live)
        self._w.snapshot_button.setEnabled(live or self._w.avatars.selected_id() is not None)
        if state == LiveState.IDLE:
            self._set_checked(False)

    def recordings_dir(self) -> Path:
        chosen = self._ctx.settings.settings.recordings_dir
        if chosen:
            return Path(chosen)
        movies = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
        return Path(movies or Path.home()) / "imtalker-cam"

    def _ready_folder(self) -> Path | None:
        folder = self.recordings_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._ctx.messages.error(
                f"The recordings folder {folder} cannot be created ({exc.strerror or exc}). "
                "Choose another one in File › Choose recordings folder…"
            )
            return None
        return folder

    def choose_recordings_folder(self) -> Path | None:
        chosen = QFileDialog.getExistingDirectory(
            self._dialog_parent, "Folder for recordings and snapshots", str(self.recordings_dir())
        )
        if not chosen:
            return None
        self._ctx.settings.update(replace(self._ctx.settings.settings, recordings_dir=chosen))
        self._ctx.messages.status(f"Recordings and snapshots go to {chosen}", 8000)
        return Path(chosen)

    def open_recordings_folder(self) -> bool:
        folder = self._ready_folder()
        if folder is None:
            return False
        self._ctx.messages.status(f"Opening {folder}…", 4000)
        if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            return True
        self._ctx.messages.error(
            f"No file manager could be opened. Your recordings and snapshots are in:\n{folder}"
        )
        return False

    def _record_toggled(self, on: bool) -> None:
        if on:
            folder = self._ready_folder()
            if folder is None:
                self._recording_changed(False, "")
                return
            self._ctx.bridge.start_recording(folder / time.strftime("imtalker-%Y%m%d-%H%M%S.mp4"))
        else:
            self._ctx.bridge.stop_recording()

    def _set_checked(self, on: bool) -> None:
        """The button's state without asking the bridge to start or stop anything."""
        button = self._w.record_button
        button.blockSignals(True)
        button.setChecked(on)
        button.blockSignals(False)

    def _recording_changed(self, recording: bool, path: str) -> None:
        self._set_checked(recording)
        self._w.record_button.setText(STOP_RECORD_TEXT if recording else RECORD_TEXT)
        self._recording_since = time.monotonic() if recording else None
        if recording:
            self._ctx.messages.status(f"● Recording 0:00 to {path}")
            if not self._preview_realtime():
                self._w.alerts.show_alert(
                    "recording",
                    "Not real time on this machine: the recording will be a slideshow. For a "
                    "smooth file, render it offline with imtalker-cam render.",
                    severity="warning",
                )
        else:
            self._w.alerts.clear("recording")
            if path:
                self._ctx.messages.status(f"Saved the recording to {path}", 10000)

    def _preview_realtime(self) -> bool:
        stats = self._w.preview.stats
        return stats is None or stats.realtime

    def _show_elapsed(self, stats: LiveStats) -> None:
        since = self._recording_since
        if self._ctx.bridge.recording is not None and since is not None:
            elapsed = int(time.monotonic() - since)
            note = "" if stats.realtime else " - not real time: the file will be a slideshow"
            self._ctx.messages.status(
                f"● Recording {elapsed // 60}:{elapsed % 60:02d} to {self._ctx.bridge.recording}"
                + note
            )

    def snapshot(self) -> Path | None:
        image = self._w.preview.current_frame
        if image is None:
            avatar_id = self._w.avatars.selected_id()
            entry = self._gallery.get(avatar_id) if avatar_id else None
            image = QImage(str(entry.avatar_path)) if entry else None
        if image is None or image.isNull():
            return None
        folder = self._ready_folder()
        if folder is None:
            return None
        path = folder / time.strftime("imtalker-%Y%m%d-%H%M%S.png")
        counter = 1
        while path.exists():
            path = path.with_name(f"{path.stem.split('_')[0]}_{counter}.png")
            counter += 1
        if not image.save(str(path)):  # PNG, from the suffix
            self._ctx.messages.error(f"Could not save the snapshot to {path}")
            return None
        self._ctx.messages.status(f"Snapshot saved to {path}", 8000)
        return path
