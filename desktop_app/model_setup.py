"""The guided model set-up (GUI thread; the work runs on the dialog's worker thread).

Opens on the first run or whenever the model is missing: download it (progress, speed, time
left, cancel) or import files already on disk, then convert it to ONNX (progress). When the
network is unreachable it says what to do instead. Closing the dialog mid-way cancels the
work and waits for the worker to stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_app.services import Cancelled, Models, ModelState, Offline, Progress
from desktop_app.tasks import TaskRunner
from runtime.core.units import human_bytes, human_duration

logger = logging.getLogger(__name__)


def summarise_missing(paths: tuple[str, ...]) -> str:
    """'renderer.ckpt, wav2vec2-base-960h (4 files)': folders counted, not listed."""
    groups: dict[str, int] = {}
    for path in paths:
        head = path.split("/")[0]
        groups[head] = groups.get(head, 0) + 1
    return ", ".join(f"{name} ({n} files)" if n > 1 else name for name, n in groups.items())


def describe(progress: Progress) -> str:
    parts = [progress.label]
    if progress.fraction is not None:
        parts.append(f"{100 * progress.fraction:.0f}%")
    if progress.speed:
        parts.append(f"{human_bytes(progress.speed)}/s")
    if progress.eta is not None:
        parts.append(f"{human_duration(progress.eta)} left")
    return "  ·  ".join(parts)


class _Relay(QObject):
    """Progress from the worker thread: the newest report waits here and a bare signal says
    one is there (a queued signal carrying a Python object can crash PySide6 at exit)."""

    available = Signal()
    progress = Signal(object)  # Progress, emitted on the GUI thread

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: Progress | None = None
        self.available.connect(self._deliver)

    def put(self, progress: Progress) -> None:
        """Worker thread."""
        with self._lock:
            notify = self._latest is None
            self._latest = progress
        if notify:
            self.available.emit()

    def _deliver(self) -> None:
        with self._lock:
            progress, self._latest = self._latest, None
        if progress is not None:
            self.progress.emit(progress)


class ModelSetupDialog(QDialog):
    """Emits `ready(graphs_dir)` once converted graphs exist; `accept()`s on "Start"."""

    ready = Signal(object)

    def __init__(self, models: Models, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.models = models
        self.setWindowTitle("Set up the model")
        self.setAccessibleName("Set up the model")
        self.setMinimumWidth(620)
        self._runner = TaskRunner("model-setup", self)
        self._relay = _Relay(self)
        self._cancel = threading.Event()
        self._working = False

        title = QLabel("Set up the IMTalker model", self)
        title.setObjectName("PanelTitle")
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName("Model status")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar(self)
        self.progress.setAccessibleName("Progress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.detail = QLabel(self)
        self.detail.setObjectName("Muted")
        self.detail.setWordWrap(True)
        self.detail.setAccessibleName("Progress details")
        self.help = QTextBrowser(self)
        self.help.setAccessibleName("What to do next")
        self.help.setOpenExternalLinks(True)
        self.help.setMinimumHeight(160)
        self.help.hide()

        self.download_button = QPushButton("&Download the model", self)
        self.download_button.setObjectName("Primary")
        self.download_button.setAccessibleName("Download the model")
        self.import_button = QPushButton("&Import files…", self)
        self.import_button.setAccessibleName("Import model files from disk")
        self.import_button.setToolTip(
            "Pick the folder that holds renderer.ckpt, generator.ckpt and wav2vec2-base-960h"
        )
        self.convert_button = QPushButton("Con&vert", self)
        self.convert_button.setAccessibleName("Convert the model")
        self.cancel_button = QPushButton("&Cancel", self)
        self.cancel_button.setAccessibleName("Cancel")
        self.close_button = QPushButton("&Later", self)
        self.close_button.setAccessibleName("Close and set up later")
        self.done_button = QPushButton("&Start", self)
        self.done_button.setObjectName("Primary")
        self.done_button.setAccessibleName("Start using the app")

        buttons = QHBoxLayout()
        for button in (self.download_button, self.import_button, self.convert_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        for button in (self.cancel_button, self.close_button, self.done_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addWidget(title)
        layout.addWidget(self.summary)
        layout.addWidget(self.progress)
        layout.addWidget(self.detail)
        layout.addWidget(self.help, 1)
        layout.addLayout(buttons)

        self.download_button.clicked.connect(self.start_download)
        self.import_button.clicked.connect(self._choose_import)
        self.convert_button.clicked.connect(self.start_convert)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self.done_button.clicked.connect(self.accept)
        self._relay.progress.connect(self._show_progress)
        self.refresh()

    # ---- state

    @property
    def working(self) -> bool:
        return self._working

    def refresh(self) -> ModelState:
        try:
            state = self.models.model_state()
        except Exception as exc:
            logger.exception("cannot read the model state")
            state = ModelState(False, None, (), f"The model store cannot be read: {exc}")
        self._state = state
        if state.ready:
            self.summary.setText("The model is installed and converted. You are ready to go live.")
        elif state.weights_missing:
            self.summary.setText(
                "imtalker-cam needs the IMTalker model (from Hugging Face, cbsjtu01/IMTalker) "
                "before it can animate a photo. Download it now, or import the files if you "
                f"already have them.\n\nStill needed: {summarise_missing(state.weights_missing)}."
            )
        else:
            self.summary.setText(
                "The model files are here. They need a one-time conversion for this computer "
                "(a few minutes)."
            )
        if not self._working:
            self.detail.setText(state.detail)
            self.progress.setValue(1000 if state.ready else 0)
            self.progress.setVisible(state.ready)
        self._sync()
        if state.ready and state.graphs_dir is not None:
            self.ready.emit(state.graphs_dir)
        return state

    def _sync(self) -> None:
        idle = not self._working
        state = self._state
        self.download_button.setVisible(idle and bool(state.weights_missing))
        self.import_button.setVisible(idle and not state.ready)
        self.convert_button.setVisible(idle and not state.weights_missing and not state.ready)
        self.cancel_button.setVisible(self._working)
        self.close_button.setVisible(idle and not state.ready)
        self.done_button.setVisible(idle and state.ready)
        if idle:
            for button in (self.done_button, self.download_button, self.convert_button):
                if button.isVisible():
                    button.setDefault(True)
                    button.setFocus()
                    break

    # ---- actions

    def start_download(self) -> None:
        self._run(
            "Downloading…", lambda p, c: self.models.download(progress=p, cancel=c), convert=True
        )

    def start_import(self, paths: list[Path]) -> None:
        self._run(
            "Importing…",
            lambda p, c: self.models.import_files(paths, progress=p, cancel=c),
            convert=True,
        )

    def start_convert(self) -> None:
        self._run(
            "Converting…", lambda p, c: self.models.convert(progress=p, cancel=c), convert=False
        )

    def cancel(self) -> None:
        if self._working:
            self._cancel.set()
            self.detail.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def _choose_import(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder holding the model files")
        if folder:
            self.start_import([Path(folder)])

    def _run(
        self,
        headline: str,
        work: Callable[[Callable[[Progress], None], threading.Event], object],
        *,
        convert: bool,
    ) -> None:
        if self._working:
            return
        self._working = True
        self._cancel = threading.Event()
        self.cancel_button.setEnabled(True)
        self.help.hide()
        self.detail.setText(headline)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.setVisible(True)
        self._sync()
        cancel, emit = self._cancel, self._relay.put

        def job() -> object:
            result = work(emit, cancel)
            if convert and not cancel.is_set():
                state = self.models.model_state()
                if not state.weights_missing and not state.ready:
                    return self.models.convert(progress=emit, cancel=cancel)
            return result

        self._runner.submit(job, on_done=self._finished, on_error=self._failed)

    def _show_progress(self, progress: Progress) -> None:
        if not self._working:
            return
        if progress.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(1000 * progress.fraction))
        self.detail.setText(describe(progress))

    def _finished(self, _result: object) -> None:
        self._working = False
        self.progress.setRange(0, 1000)
        state = self.refresh()
        if not state.ready and state.weights_missing:
            self.detail.setText(
                "Some files are still missing: " + summarise_missing(state.weights_missing)
            )

    def _failed(self, exc: BaseException) -> None:
        self._working = False
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.refresh()
        if isinstance(exc, Cancelled):
            self.detail.setText("Cancelled. What was already downloaded is kept for next time.")
            return
        self.detail.setText(str(exc))
        if isinstance(exc, Offline):
            self.help.setPlainText(self.models.offline_help())
            self.help.show()

    # ---- closing

    def done(self, result: int) -> None:
        self._cancel.set()
        self._runner.shutdown(timeout=30)
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._cancel.set()
        super().closeEvent(event)
