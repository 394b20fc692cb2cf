"""Recording, snapshots and the recordings folder for the main window (GUI thread).

A mixin of `MainWindow`: it uses the window's bridge, preview, gallery, settings and status
bar. The recordings folder is the user's choice (File › Choose recordings folder…, kept in
the settings) or Videos/imtalker-cam; opening it says what happened, also when no file
manager can be launched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QStandardPaths, QUrl
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QFileDialog

if TYPE_CHECKING:
    from desktop_app.main_window import MainWindow

RECORD_TEXT = "● &Record"
STOP_RECORD_TEXT = "■ Stop &recording"


class RecordingMixin:
    def recordings_dir(self: MainWindow) -> Path:
        if self.settings.recordings_dir:
            return Path(self.settings.recordings_dir)
        movies = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
        return Path(movies or Path.home()) / "imtalker-cam"

    def _ready_folder(self: MainWindow) -> Path | None:
        folder = self.recordings_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.show_error(
                f"The recordings folder {folder} cannot be created ({exc.strerror or exc}). "
                "Choose another one in File › Choose recordings folder…"
            )
            return None
        return folder

    def choose_recordings_folder(self: MainWindow) -> Path | None:
        chosen = QFileDialog.getExistingDirectory(
            self, "Folder for recordings and snapshots", str(self.recordings_dir())
        )
        if not chosen:
            return None
        self._update_settings(recordings_dir=chosen)
        self.statusBar().showMessage(f"Recordings and snapshots go to {chosen}", 8000)
        return Path(chosen)

    def open_recordings_folder(self: MainWindow) -> bool:
        folder = self._ready_folder()
        if folder is None:
            return False
        self.statusBar().showMessage(f"Opening {folder}…", 4000)
        if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            return True
        self.show_error(
            f"No file manager could be opened. Your recordings and snapshots are in:\n{folder}"
        )
        return False

    def _record_toggled(self: MainWindow, on: bool) -> None:
        if on:
            folder = self._ready_folder()
            if folder is None:
                self._recording_changed(False, "")
                return
            self.bridge.start_recording(folder / time.strftime("imtalker-%Y%m%d-%H%M%S.mp4"))
        else:
            self.bridge.stop_recording()

    def _recording_changed(self: MainWindow, recording: bool, path: str) -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(recording)
        self.record_button.blockSignals(False)
        self.record_button.setText(STOP_RECORD_TEXT if recording else RECORD_TEXT)
        self._recording_since = time.monotonic() if recording else None
        if recording:
            self.statusBar().showMessage(f"● Recording 0:00 to {path}")
            if not self.preview_stats_realtime():
                self.alerts.show_alert(
                    "recording",
                    "Not real time on this machine: the recording will be a slideshow. For a "
                    "smooth file, render it offline with imtalker-cam render.",
                    severity="warning",
                )
        else:
            self.alerts.clear("recording")
            if path:
                self.statusBar().showMessage(f"Saved the recording to {path}", 10000)

    def preview_stats_realtime(self: MainWindow) -> bool:
        stats = self.preview.stats
        return stats is None or stats.realtime

    def snapshot(self: MainWindow) -> Path | None:
        image = self.preview.current_frame
        if image is None:
            avatar_id = self.avatars.selected_id()
            entry = self.gallery.get(avatar_id) if avatar_id else None
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
            self.show_error(f"Could not save the snapshot to {path}")
            return None
        self.statusBar().showMessage(f"Snapshot saved to {path}", 8000)
        return path
