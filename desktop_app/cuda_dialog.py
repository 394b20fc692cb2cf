"""The offer to fetch the CUDA runtime (GUI thread; the download runs on the dialog's worker).

It says why (the runtime's sentence) and how much is downloaded, then shows the progress with
the speed and the time left, and a Cancel that leaves nothing behind. A failure is one
sentence in the dialog, with "Try again". "Don't ask again" is read by whoever opened the
dialog when it closes. Closing the dialog mid-download cancels it and waits for the worker.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.services import Cancelled, CudaOffer, CudaRuntime, Progress
from desktop_app.tasks import CancellableRunner, ProgressRelay
from runtime.core.units import human_bytes, human_duration

logger = logging.getLogger(__name__)

TITLE = "Fetch the CUDA runtime"
DONE_TEXT = "The CUDA runtime is installed. The next Go Live runs the model on the GPU."
CANCELLED_TEXT = "Cancelled; nothing was kept."
DONT_ASK_TEXT = "&Don't ask again at start-up"
DONT_ASK_TIP = "Help › Fetch the CUDA runtime still offers it"


def size_text(offer: CudaOffer) -> str:
    packages = "1 package" if offer.files == 1 else f"{offer.files} packages"
    return f"Download: {human_bytes(offer.total_bytes)} ({packages} from PyPI)."


def progress_text(progress: Progress, total_bytes: int) -> str:
    """'412.0 MB of 1.4 GB  ·  12.5 MB/s  ·  about 1m18s left'."""
    parts = []
    if progress.fraction is not None:
        parts.append(
            f"{human_bytes(progress.fraction * total_bytes)} of {human_bytes(total_bytes)}"
        )
    if progress.speed:
        parts.append(f"{human_bytes(progress.speed)}/s")
    if progress.eta is not None:
        parts.append(f"about {human_duration(progress.eta)} left")
    else:
        parts.append("estimating the time left…")
    return "  ·  ".join(parts)


class CudaFetchDialog(QDialog):
    """Emits `installed` once the runtime is fetched and loaded."""

    installed = Signal()

    def __init__(self, cuda: CudaRuntime, offer: CudaOffer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cuda = cuda
        self.offer = offer
        self.setWindowTitle(TITLE)
        self.setAccessibleName(TITLE)
        self.setMinimumWidth(520)
        self._tasks = CancellableRunner("cuda-fetch", self)
        self._relay: ProgressRelay[Progress] = ProgressRelay(self)
        self._working = False
        self.done_ok = False

        self.summary = QLabel(f"{offer.reason}.\n\n{size_text(offer)}", self)
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName("What the CUDA runtime is")
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setAccessibleName("Download progress")
        self.progress.hide()
        self.detail = QLabel(self)
        self.detail.setObjectName("Muted")
        self.detail.setWordWrap(True)
        self.detail.setAccessibleName("Progress details")
        self.dont_ask = QCheckBox(DONT_ASK_TEXT, self)
        self.dont_ask.setToolTip(DONT_ASK_TIP)
        self.fetch_button = QPushButton("&Fetch", self)
        self.fetch_button.setObjectName("Primary")
        self.fetch_button.setAccessibleName("Fetch the CUDA runtime")
        self.cancel_button = QPushButton("&Cancel", self)
        self.cancel_button.setAccessibleName("Cancel the download")
        self.close_button = QPushButton("&Not now", self)
        self.close_button.setAccessibleName("Close without fetching")

        buttons = QHBoxLayout()
        buttons.addWidget(self.dont_ask)
        buttons.addStretch(1)
        for button in (self.fetch_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addWidget(self.summary)
        layout.addWidget(self.progress)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)

        self.fetch_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self._relay.progress.connect(self._show_progress)
        self._sync()

    @property
    def working(self) -> bool:
        return self._working

    def _sync(self) -> None:
        idle = not self._working
        self.fetch_button.setVisible(idle and not self.done_ok)
        self.cancel_button.setVisible(self._working)
        self.cancel_button.setEnabled(self._working)
        self.close_button.setVisible(idle)
        self.close_button.setText("&Close" if self.done_ok else "&Not now")
        self.dont_ask.setVisible(idle and not self.done_ok)
        if idle:
            default = self.close_button if self.done_ok else self.fetch_button
            default.setDefault(True)
            default.setFocus()

    def start(self) -> None:
        if self._working or self.done_ok:
            return
        self._working = True
        cancel = self._tasks.begin()
        self.progress.setRange(0, 0)  # busy until the first report
        self.progress.show()
        self.detail.setText("Connecting…")
        self._sync()
        self._fit()
        emit = self._relay.put
        self._tasks.submit(
            lambda: self.cuda.fetch(progress=emit, cancel=cancel),
            on_done=self._finished,
            on_error=self._failed,
        )

    def _fit(self) -> None:
        """Grow to show every line: wrapped labels are taller than adjustSize() assumes."""
        layout = self.layout()
        assert layout is not None, "set in __init__"
        needed = layout.totalHeightForWidth(self.width())
        if needed > self.height():
            self.resize(self.width(), needed)

    def cancel(self) -> None:
        if self._working:
            self._tasks.cancel()
            self.detail.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def _show_progress(self, progress: Progress) -> None:
        if not self._working or self._tasks.cancelled:
            return
        if progress.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(1000 * progress.fraction))
        self.detail.setText(progress_text(progress, self.offer.total_bytes))

    def _finished(self, _result: object) -> None:
        self._working = False
        self.done_ok = True
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        self.detail.setText(DONE_TEXT)
        self._sync()
        self._fit()
        self.installed.emit()

    def _failed(self, exc: BaseException) -> None:
        self._working = False
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.hide()
        if isinstance(exc, Cancelled):
            self.detail.setText(CANCELLED_TEXT)
            self.fetch_button.setText("&Fetch")
        else:
            logger.warning("fetching the CUDA runtime failed: %s", exc)
            self.detail.setText(str(exc))
            self.fetch_button.setText("&Try again")
        self._sync()
        self._fit()

    # ---- closing

    def done(self, result: int) -> None:
        self._tasks.close()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:
        # A dialog closed without done() still ends its worker.
        self._tasks.close()
        super().closeEvent(event)
