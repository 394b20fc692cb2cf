"""What drives the face (GUI thread): a microphone with a level meter, a webcam, or an audio
file played in real time as the voice (to check lip sync without talking).

Microphones are listed by their system descriptions and remembered by a stable id (never an
index). "Test" opens the microphone (or webcam) without going live and reads "Stop" while it
runs: levels and frames arrive on device threads and reach the widgets only through signals.
While live the engine owns the device, so the test stops and the meter shows the level read
on the engine's capture side (30 times a second, whatever the engine is doing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.elided_combo import ElidedComboBox, ElidedLabel
from desktop_app.images import rgb_to_qimage
from desktop_app.level_meter import LevelMeter
from desktop_app.services import AudioLevel, Closable, DeviceChoice, Devices
from desktop_app.settings import SourceKind

logger = logging.getLogger(__name__)

T = TypeVar("T")  # what a device lister lists

WEBCAM_PREVIEW = 160
DEFAULT_LABEL = "System default"


class _DeviceSignals(QObject):
    """Carries device-thread callbacks to the GUI thread."""

    level = Signal(float, float)  # rms, peak dBFS (plain floats: queued across threads)
    frame = Signal(QImage)
    failed = Signal(str)


AUDIO_FILTER = (
    "Audio and video files (*.wav *.mp3 *.m4a *.aac *.flac *.ogg *.opus *.mp4 *.mkv *.webm "
    "*.mov);;All files (*)"
)
NO_FILE = "No file chosen"


class SourcePanel(QWidget):
    source_changed = Signal(str, object)
    """kind "microphone" or "webcam", device id (None: system default)."""
    file_source_chosen = Signal(object)
    """The audio file became the source, or another file was chosen (a Path). Kept apart
    from `source_changed`, whose receivers know only microphones and webcams."""

    def __init__(
        self,
        devices: Devices,
        *,
        kind: SourceKind,
        microphone: str | None,
        webcam: str | None,
        audio_file: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.devices = devices
        self._audio_file = Path(audio_file) if audio_file else None
        self._signals = _DeviceSignals(self)
        self._probe: Closable | None = None
        self._live = False
        self._wanted_mic = microphone
        self._wanted_cam = webcam

        self.mic_radio = QRadioButton("&Microphone", self)
        self.mic_radio.setAccessibleName("Use the microphone")
        self.mic_radio.setToolTip("Your voice drives the avatar's lips, head and eyes")
        self.cam_radio = QRadioButton("&Webcam", self)
        self.cam_radio.setAccessibleName("Use the webcam")
        self.cam_radio.setToolTip("Your face's movements drive the avatar")
        self.file_radio = QRadioButton("Audio file", self)
        self.file_radio.setAccessibleName("Use an audio file")
        self.file_radio.setToolTip(
            "A recording plays as your voice, in real time: check the lip sync without talking"
        )
        group = QButtonGroup(self)
        group.addButton(self.mic_radio)
        group.addButton(self.cam_radio)
        group.addButton(self.file_radio)
        self.file_name = ElidedLabel(self)
        self.file_name.setAccessibleName("Audio file")
        self.choose_file = QPushButton("Choose…", self)
        self.choose_file.setAccessibleName("Choose the audio file")
        self.choose_file.setToolTip("Pick a recording (WAV, MP3, M4A, FLAC, OGG or a video)")

        self.mic_combo = ElidedComboBox(self)
        self.mic_combo.setAccessibleName("Microphone")
        self.mic_combo.setMinimumContentsLength(14)
        self.mic_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.cam_combo = ElidedComboBox(self)
        self.cam_combo.setAccessibleName("Webcam")
        self.cam_combo.setMinimumContentsLength(14)
        self.cam_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setAccessibleName("Refresh the device lists")
        self.test_button = QPushButton("&Test", self)
        self.test_button.setCheckable(True)
        self.test_button.setAccessibleName("Test the source without going live")
        self.test_button.setToolTip(
            "Show the microphone level (or the webcam crop) without going live"
        )
        self.level = LevelMeter(self)
        self.cam_preview = QLabel(self)
        self.cam_preview.setFixedSize(WEBCAM_PREVIEW, WEBCAM_PREVIEW)
        self.cam_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.cam_preview.setAccessibleName("Webcam face crop")
        self.cam_preview.setText("Test to see\nthe face crop")
        self.cam_preview.setStyleSheet(
            "border: 1px solid #363c48; border-radius: 6px; color: #a3abba;"
        )
        self.status = QLabel(self)
        self.status.setObjectName("Hint")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        mic_label = QLabel("Device", self)
        mic_label.setBuddy(self.mic_combo)
        cam_label = QLabel("Camera", self)
        cam_label.setBuddy(self.cam_combo)
        form.addRow(mic_label, self.mic_combo)
        form.addRow("Level", self.level)
        form.addRow(cam_label, self.cam_combo)
        file_row = QHBoxLayout()
        file_row.addWidget(self.file_name, 1)
        file_row.addWidget(self.choose_file)
        file_label = QLabel("File", self)
        file_label.setBuddy(self.choose_file)
        form.addRow(file_label, file_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.mic_radio)
        layout.addWidget(self.cam_radio)
        layout.addWidget(self.file_radio)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.cam_preview, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.status)
        layout.addStretch(1)

        radio = {"webcam": self.cam_radio, "file": self.file_radio}.get(kind, self.mic_radio)
        radio.setChecked(True)
        self._show_file()
        self.refresh()
        self._sync()
        self.mic_radio.toggled.connect(self._kind_changed)
        self.cam_radio.toggled.connect(self._kind_changed)
        self.file_radio.toggled.connect(self._kind_changed)
        self.choose_file.clicked.connect(self._pick_file)
        self.mic_combo.currentIndexChanged.connect(self._device_changed)
        self.cam_combo.currentIndexChanged.connect(self._device_changed)
        self.refresh_button.clicked.connect(self.rescan)
        self.test_button.toggled.connect(self._test_toggled)
        self._signals.level.connect(lambda rms, peak: self.show_level(AudioLevel(rms, peak)))
        self._signals.frame.connect(self._show_frame)
        self._signals.failed.connect(self._probe_failed)

    def tab_chain(self) -> list[QWidget]:
        """The panel's controls in keyboard order."""
        return [
            self.mic_radio,
            self.cam_radio,
            self.file_radio,
            self.mic_combo,
            self.cam_combo,
            self.choose_file,
            self.test_button,
            self.refresh_button,
        ]

    # ---- values

    @property
    def kind(self) -> SourceKind:
        if self.file_radio.isChecked():
            return "file"
        return "webcam" if self.cam_radio.isChecked() else "microphone"

    @property
    def audio_file(self) -> Path | None:
        """The recording to play as the voice (whatever the chosen kind)."""
        return self._audio_file

    def set_audio_file(self, path: Path) -> None:
        """Use `path` as the audio file source (what the Choose… dialog does)."""
        self._audio_file = path
        self._show_file()
        if not self.file_radio.isChecked():
            self.file_radio.setChecked(True)  # _kind_changed reports it
        else:
            self.file_source_chosen.emit(path)

    def _pick_file(self) -> None:
        start = str(self._audio_file.parent) if self._audio_file else ""
        chosen, _ = QFileDialog.getOpenFileName(self, "Audio file to play", start, AUDIO_FILTER)
        if chosen:
            self.set_audio_file(Path(chosen))

    def _show_file(self) -> None:
        path = self._audio_file
        self.file_name.setText(path.name if path else NO_FILE)
        self.file_name.setToolTip(str(path) if path else "")

    @property
    def microphone(self) -> str | None:
        data = self.mic_combo.currentData()
        return None if data is None else str(data)

    @property
    def webcam(self) -> str | None:
        data = self.cam_combo.currentData()
        return None if data is None else str(data)

    def rescan(self) -> None:
        """Refresh: ask the system for its devices again (one plugged in since start appears),
        then re-read the lists. The test stops first: its stream would hold the old list."""
        self.stop_test()
        try:
            self.devices.rescan()
        except Exception as exc:  # the lists below still say what is known
            logger.warning("cannot rescan devices: %s", exc)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the device lists, keeping the chosen devices when they are still there."""
        mics_found: list[DeviceChoice] = self._list(self.devices.microphones)
        cam_names: list[str] = self._list(self.devices.webcams)
        mic_items = [(m.id, m.label) for m in mics_found]
        # A name saved by an older version (before stable ids) finds its device again.
        if self._wanted_mic is not None and all(i != self._wanted_mic for i, _ in mic_items):
            match = next((i for i, label in mic_items if label == self._wanted_mic), None)
            self._wanted_mic = match or self._wanted_mic
        self._fill(self.mic_combo, mic_items, self._wanted_mic, True)
        default = self._default_name()
        self.mic_combo.setItemText(0, f"{DEFAULT_LABEL} ({default})" if default else DEFAULT_LABEL)
        self._fill(self.cam_combo, [(n, n) for n in cam_names], self._wanted_cam, False)
        mics, cams = len(mics_found), len(cam_names)
        self.status.setText(
            f"{mics} microphone{'s' if mics != 1 else ''} and {cams} "
            f"webcam{'s' if cams != 1 else ''} found."
        )
        self._sync()

    def _default_name(self) -> str | None:
        try:
            return self.devices.default_microphone()
        except Exception:  # as for the lists: never break the panel
            return None

    def _list(self, lister: Callable[[], list[T]]) -> list[T]:
        try:
            return list(lister())
        except Exception as exc:  # a missing audio system must not break the panel
            logger.warning("cannot list devices: %s", exc)
            self.status.setText(f"Cannot list devices: {exc}")
            return []

    @staticmethod
    def _fill(
        combo: QComboBox, items: list[tuple[str, str]], wanted: str | None, with_default: bool
    ) -> None:
        """`items`: (id, label) pairs; the combo shows labels and keeps ids as item data."""
        combo.blockSignals(True)
        try:
            combo.clear()
            if with_default:
                combo.addItem(DEFAULT_LABEL, None)
            for device_id, label in items:
                combo.addItem(label, device_id)
                combo.setItemData(combo.count() - 1, label, Qt.ItemDataRole.ToolTipRole)
            index = combo.findData(wanted) if wanted is not None else 0
            if wanted is not None and index < 0:
                combo.addItem(f"{wanted} (not connected)", wanted)
                index = combo.count() - 1
            combo.setCurrentIndex(max(0, index))
            combo.setPlaceholderText("None found")
        finally:
            combo.blockSignals(False)

    # ---- live state

    def set_live(self, live: bool) -> None:
        """While live the engine owns the device: stop testing, lock the choice."""
        self._live = live
        if live:
            self.test_button.setChecked(False)
        self._sync()
        if not live:
            self.level.reset()

    def show_level(self, level: AudioLevel) -> None:
        self.level.set_level(level)

    def stop_test(self) -> None:
        """Close the test device (also called when the window closes)."""
        self.test_button.setChecked(False)
        self._close_probe()

    # ---- internals

    def _sync(self) -> None:
        mic = self.kind == "microphone"
        cam = self.kind == "webcam"
        for widget in (self.mic_radio, self.cam_radio, self.file_radio, self.refresh_button):
            widget.setEnabled(not self._live)
        self.mic_combo.setEnabled(mic and not self._live)
        self.cam_combo.setEnabled(cam and not self._live)
        self.choose_file.setEnabled(self.kind == "file" and not self._live)
        self.file_name.setEnabled(self.kind == "file")
        self.level.setEnabled(mic)
        self.cam_preview.setVisible(cam)
        self.test_button.setEnabled(
            not self._live and (mic or (cam and self.cam_combo.count() > 0))
        )

    def _kind_changed(self, checked: bool) -> None:
        if not checked:
            return  # the radio that was switched off; the one switched on reports
        self.stop_test()
        self._sync()
        self._emit()

    def _device_changed(self) -> None:
        self._wanted_mic = self.microphone
        self._wanted_cam = self.webcam
        if self.test_button.isChecked():
            self._close_probe()
            self._open_probe()
        self._emit()

    def _emit(self) -> None:
        if self.kind == "file":
            if self._audio_file is None:
                self._pick_file()  # choosing the kind without a file asks for one
            if self._audio_file is not None:
                self.file_source_chosen.emit(self._audio_file)
            return
        device = self.microphone if self.kind == "microphone" else self.webcam
        self.source_changed.emit(self.kind, device)

    def _test_toggled(self, on: bool) -> None:
        self.test_button.setText("S&top" if on else "&Test")
        if on:
            self._open_probe()
        else:
            self._close_probe()

    def _open_probe(self) -> None:
        self._close_probe()
        signals = self._signals
        try:
            if self.kind == "microphone":
                self._probe = self.devices.monitor_microphone(
                    self.microphone, lambda lv: signals.level.emit(lv.rms_db, lv.peak_db)
                )
                self.status.setText("Speak: the bar shows what the microphone hears.")
            else:
                camera = self.webcam
                if camera is None:
                    raise RuntimeError("no webcam selected")
                self._probe = self.devices.preview_webcam(
                    camera, lambda rgb: signals.frame.emit(rgb_to_qimage(rgb))
                )
                self.status.setText("Look at the camera: the box shows the face crop.")
        except Exception as exc:
            signals.failed.emit(str(exc))

    def _close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()
        self.level.reset()

    def _probe_failed(self, message: str) -> None:
        self.test_button.setChecked(False)
        self.status.setText(f"Cannot open the device: {message}")

    def _show_frame(self, image: QImage) -> None:
        if self._probe is None:
            return
        self.cam_preview.setPixmap(
            QPixmap.fromImage(
                image.scaled(
                    WEBCAM_PREVIEW,
                    WEBCAM_PREVIEW,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        )
