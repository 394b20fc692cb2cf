"""The guided model set-up (GUI thread; the work runs on the dialog's worker thread).

Opens on the first run or whenever the model is missing: download it (progress, speed, time
left, cancel) or import files already on disk, then convert it to ONNX (progress). When the
network is unreachable it says what to do instead. Closing the dialog mid-way cancels the
work and waits for the worker to stop.

Offline, it says so in plain words ("No internet connection") with the technical reason
beside it, and shows the manual steps fully at the dialog's size (never larger than the
screen's available area: past that the texts scroll and the buttons stay in view), with
links that open in the browser and a button that copies them. The download's size is stated
before it starts. A conversion shows the time spent and the time left, estimated from the
previous conversion on this computer (kept in the cache folder) or from the graphs converted
so far.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QShowEvent, QTextOption
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_app.services import Cancelled, Models, ModelState, Offline, Progress
from desktop_app.tasks import CancellableRunner, ProgressRelay
from runtime.core import paths
from runtime.core.units import human_bytes, human_duration

logger = logging.getLogger(__name__)

DOWNLOAD_SIZE = "about 1.4 GB"  # the six files of cbsjtu01/IMTalker together
OFFLINE_TEXT = "No internet connection (the hub could not be reached)."
_URL = re.compile(r"https?://[^\s<>\"']+")
_TIMES_FILE = "conversion_time.json"
_MEASURE_FILE = "measure_time.json"
TICK_MS = 1000  # the time texts move on once a second between progress reports
WINDOW_FRAME = QSize(16, 40)  # room for the window manager's frame and title bar
_HELP_LEAST = 120  # px: the offline steps are never squeezed below this (they scroll)


def help_html(text: str) -> str:
    """Plain help text as HTML whose links can be clicked (and selected, and copied)."""
    out = []
    for line in text.splitlines():
        escaped = html.escape(line)
        linked = _URL.sub(lambda m: f"<a href='{m.group(0)}'>{m.group(0)}</a>", escaped)
        out.append(linked.replace("  ", "&nbsp;&nbsp;"))
    return "<br>".join(out)


def links_in(text: str) -> list[str]:
    return _URL.findall(text)


class ConversionClock:
    """Elapsed and remaining time of a conversion (or, with `kind="measure"`, of the timing
    run after it): from the previous run's duration on this computer (kept in the cache
    folder) while this one is within it, else from the share done so far."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, kind: str = "conversion"
    ) -> None:
        self._clock = clock
        self._kind = kind
        self._started = clock()
        self.previous = self._load()

    def _file(self) -> Path:
        return paths.cache_dir() / (_TIMES_FILE if self._kind == "conversion" else _MEASURE_FILE)

    def _load(self) -> float | None:
        try:
            value = json.loads(self._file().read_text(encoding="utf-8")).get("seconds")
        except (OSError, ValueError, AttributeError):
            return None
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def elapsed(self) -> float:
        return self._clock() - self._started

    def remaining(self, fraction: float | None) -> float | None:
        elapsed = self.elapsed()
        if self.previous is not None and elapsed < self.previous:
            return self.previous - elapsed
        if fraction:
            return elapsed * (1 - fraction) / fraction
        return None

    def shown_fraction(self, reported: float | None) -> float | None:
        """What the bar shows: the reported share, moved on by the time spent when the
        previous run's duration is known (a long stage no longer looks stuck)."""
        if self.previous is None:
            return reported
        by_time = min(0.99, self.elapsed() / self.previous)
        return max(reported or 0.0, by_time)

    def finished(self) -> None:
        try:
            self._file().parent.mkdir(parents=True, exist_ok=True)
            self._file().write_text(json.dumps({"seconds": round(self.elapsed(), 1)}))
        except OSError as exc:  # only the next estimate suffers
            logger.debug("cannot keep the %s time: %s", self._kind, exc)


def summarise_missing(paths: tuple[str, ...]) -> str:
    """'6 files (renderer.ckpt, generator.ckpt, 4 in wav2vec2-base-960h/)': folders counted,
    not listed, and the total counted as the manual download steps count it (every file)."""
    groups: dict[str, int] = {}
    for path in paths:
        head = path.split("/")[0]
        groups[head] = groups.get(head, 0) + (1 if "/" in path else 0)
    parts = ", ".join(f"{n} in {name}/" if n else name for name, n in groups.items())
    return paths[0] if len(paths) == 1 else f"{len(paths)} files ({parts})"


def describe(progress: Progress) -> str:
    parts = [progress.label]
    if progress.fraction is not None:
        parts.append(f"{100 * progress.fraction:.0f}%")
    if progress.speed:
        parts.append(f"{human_bytes(progress.speed)}/s")
    if progress.eta is not None:
        parts.append(f"{human_duration(progress.eta)} left")
    return "  ·  ".join(parts)


_PHASE_SUMMARY = {
    "download": f"Downloading the IMTalker model ({DOWNLOAD_SIZE}).",
    "verify": "Checking the model files.",
    "copy": "Importing the model files.",
    "convert": "Converting the model for this computer (once; a few minutes).",
    "measure": "Timing the model on this computer (once; Cancel skips it).",
}
_CANCELLED = {
    "Downloading…": "Download cancelled. What was already downloaded is kept for next time.",
    "Importing…": "Import cancelled. Files already copied and checked are kept; your folder "
    "is untouched.",
    "Converting…": "Conversion cancelled. It starts again from the beginning next time.",
}


@dataclass(frozen=True)
class Measured:
    """The bench's verdict after a conversion (shown in the dialog)."""

    verdict: str
    not_real_time: str | None = None  # what going live gives instead, and what to do


class ModelSetupDialog(QDialog):
    """Emits `ready(graphs_dir)` once converted graphs exist; `accept()`s on "Start"."""

    ready = Signal(object)

    def __init__(
        self,
        models: Models,
        parent: QWidget | None = None,
        *,
        available: Callable[[], QRect] | None = None,
    ) -> None:
        super().__init__(parent)
        self.models = models
        self._available = available or (lambda: self.screen().availableGeometry())
        self.setWindowTitle("Set up the model")
        self.setAccessibleName("Set up the model")
        self.setMinimumWidth(620)
        self._tasks = CancellableRunner("model-setup", self)
        self._relay: ProgressRelay[Progress] = ProgressRelay(self)
        self._working = False
        self._operation = ""
        self._state: ModelState | None = None
        self.verdict: str | None = None
        """The timing verdict after a conversion in this dialog (`imtalker-cam bench`)."""

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
        self.help.setMinimumHeight(220)
        self.help.hide()
        self.copy_links_button = QPushButton("Copy the lin&ks", self)
        self.copy_links_button.setAccessibleName("Copy the download links")
        self.copy_links_button.hide()
        self._help_text = ""
        self._clock: ConversionClock | None = None
        self._last: Progress | None = None
        self.time_source: Callable[[], float] = time.monotonic
        self._ticker = QTimer(self)
        self._ticker.setInterval(TICK_MS)
        self._ticker.timeout.connect(self._tick)

        self.download_button = QPushButton(f"&Download the model ({DOWNLOAD_SIZE})", self)
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
        for button in (
            self.download_button,
            self.import_button,
            self.convert_button,
            self.copy_links_button,
        ):
            buttons.addWidget(button)
        buttons.addStretch(1)
        for button in (self.cancel_button, self.close_button, self.done_button):
            buttons.addWidget(button)
        # Everything but the buttons scrolls, so the buttons stay on a short screen.
        self._body = QWidget(self)
        body = QVBoxLayout(self._body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(10)
        body.addWidget(title)
        body.addWidget(self.summary)
        body.addWidget(self.progress)
        body.addWidget(self.detail)
        body.addWidget(self.help, 1)
        self._scroll = QScrollArea(self)
        self._scroll.setObjectName("SetupScroll")
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._scroll.setWidget(self._body)
        self._buttons = buttons
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addWidget(self._scroll, 1)
        layout.addLayout(buttons)

        self.download_button.clicked.connect(self.start_download)
        self.import_button.clicked.connect(self._choose_import)
        self.convert_button.clicked.connect(self.start_convert)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self.done_button.clicked.connect(self.accept)
        self.copy_links_button.clicked.connect(self.copy_links)
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
        version = f" (IMTalker {state.model_version})" if state.model_version else ""
        if state.ready:
            self.summary.setText(
                f"The model{version} is installed and converted. You are ready to go live."
            )
        elif state.weights_missing:
            self.summary.setText(
                "imtalker-cam needs the IMTalker model (from Hugging Face, cbsjtu01/IMTalker, "
                f"{DOWNLOAD_SIZE}) before it can animate a photo. Download it now, or import "
                "the files if you already have them.\n\nStill needed: "
                f"{summarise_missing(state.weights_missing)}."
            )
        else:
            self.summary.setText(
                f"The model files{version} are here. They need a one-time conversion for this "
                "computer (a few minutes)."
            )
        if not self._working:
            self.detail.setText(state.detail)
            self.progress.setValue(1000 if state.ready else 0)
            self.progress.setVisible(state.ready)
        self._sync()
        if self.isVisible():
            self.fit_to_screen(grow_only=True)  # a longer text shows whole where it can
        if state.ready and state.graphs_dir is not None:
            self.ready.emit(state.graphs_dir)
        return state

    def _sync(self) -> None:
        idle = not self._working
        state = self._state
        assert state is not None, "refresh() runs in __init__"
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

    def copy_links(self) -> list[str]:
        links = links_in(self._help_text)
        QGuiApplication.clipboard().setText("\n".join(links))
        self.detail.setText(f"{len(links)} links copied: paste them in a browser elsewhere.")
        return links

    def start_convert(self) -> None:
        self._run(
            "Converting…", lambda p, c: self.models.convert(progress=p, cancel=c), convert=False
        )

    def cancel(self) -> None:
        if self._working:
            self._tasks.cancel()
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
        cancel = self._tasks.begin()
        self.cancel_button.setEnabled(True)
        self.help.hide()
        self.copy_links_button.hide()
        self._clock = None
        self._last = None
        self._ticker.start()
        self._operation = headline
        self.detail.setText(headline)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.setVisible(True)
        self._sync()
        emit = self._relay.put

        was_ready = self._state is not None and self._state.ready

        def job() -> object:
            result = work(emit, cancel)
            if convert and not cancel.is_set():
                state = self.models.model_state()
                if not state.weights_missing and not state.ready:
                    result = self.models.convert(progress=emit, cancel=cancel)
            if not was_ready and not cancel.is_set() and self.models.model_state().ready:
                return self._measure(emit, cancel)
            return result

        self._tasks.submit(job, on_done=self._finished, on_error=self._failed)

    def _measure(self, emit: Callable[[Progress], None], cancel: threading.Event) -> Measured:
        """Worker thread, once after a conversion: the bench's verdict, or why there is none
        (a failed or skipped timing never undoes the conversion)."""
        try:
            timing = self.models.measure(progress=emit, cancel=cancel)
            return Measured(timing.verdict, timing.not_real_time)
        except Cancelled:
            return Measured("Timing skipped; run `imtalker-cam bench` to measure later.")
        except Exception as exc:
            logger.warning("timing the model failed: %s", exc)
            return Measured(f"Could not time the model on this computer: {exc}")

    def _show_progress(self, progress: Progress) -> None:
        if not self._working:
            return
        previous = self._last
        self._last = progress
        self.summary.setText(_PHASE_SUMMARY[progress.phase])
        if progress.phase in ("convert", "measure"):
            if previous is None or previous.phase != progress.phase or self._clock is None:
                if self._clock is not None and previous is not None:
                    self._clock.finished()  # the conversion ended: the timing run begins
                kind = "conversion" if progress.phase == "convert" else "measure"
                self._clock = ConversionClock(clock=self.time_source, kind=kind)
            self._show_timed(progress)
            return
        self._show_bar(progress.fraction)
        self.detail.setText(describe(progress))

    def _show_bar(self, fraction: float | None) -> None:
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(1000 * fraction))

    def _show_timed(self, progress: Progress) -> None:
        """A conversion's or timing run's line: what, how far, the time spent and left."""
        assert self._clock is not None
        elapsed = self._clock.elapsed()
        left = self._clock.remaining(progress.fraction)
        self._show_bar(self._clock.shown_fraction(progress.fraction))
        timing = f"{human_duration(elapsed)} so far"
        timing += f", about {human_duration(left)} left" if left is not None else ", estimating…"
        self.detail.setText(f"{describe(progress)}  ·  {timing}")

    def _tick(self) -> None:
        """Once a second while working: the spent and left times (and the bar, when the last
        run's duration is known) move on between progress reports."""
        last = self._last
        timed = last is not None and last.phase in ("convert", "measure")
        if self._working and timed and self._clock is not None:
            assert last is not None
            self._show_timed(last)

    def _finished(self, result: object) -> None:
        self._working = False
        self._ticker.stop()
        skipped = isinstance(result, Measured) and not result.verdict.startswith("Real time")
        if self._clock is not None and not skipped:
            self._clock.finished()
        self._clock = None
        self._last = None
        self.progress.setRange(0, 1000)
        state = self.refresh()
        if isinstance(result, Measured):
            self.verdict = result.verdict
            self.detail.setText(result.verdict)
            if state.ready and result.not_real_time is not None:
                # Not "ready to go live" right above "no, 57.6x slower": what live gives here.
                version = f" (IMTalker {state.model_version})" if state.model_version else ""
                self.summary.setText(
                    f"The model{version} is installed and converted, but this computer is too "
                    f"slow for live video. {result.not_real_time}"
                )
        if not state.ready and state.weights_missing:
            self.detail.setText(
                "Some files are still missing: " + summarise_missing(state.weights_missing)
            )
        if self.isVisible():
            self.fit_to_screen(grow_only=True)

    def _failed(self, exc: BaseException) -> None:
        self._working = False
        self._ticker.stop()
        self._last = None
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.refresh()
        self._clock = None
        if isinstance(exc, Cancelled):
            self.detail.setText(_CANCELLED.get(self._operation, "Cancelled."))
            return
        self.detail.setText(str(exc))
        self.detail.setToolTip("")
        if isinstance(exc, Offline):
            self.detail.setText(OFFLINE_TEXT)
            self.detail.setToolTip(str(exc))  # the technical reason, for whoever asks
            self.show_offline_help(self.models.offline_help())

    def show_offline_help(self, text: str) -> None:
        """The manual steps, fully visible where the screen allows: the dialog grows to show
        them, up to the screen's available area (then the text scrolls)."""
        self._help_text = text
        self.help.setHtml(help_html(text))
        self.help.show()
        self.copy_links_button.setVisible(bool(links_in(text)))
        # As wide as the longest line allows on this screen (a longer link wraps), then as
        # tall as the text is at that width.
        self.help.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        document = self.help.document()
        frame = 2 * (self.help.frameWidth() + 8)  # the frame and the stylesheet's padding
        room = self.room()
        width = min(round(document.idealWidth()) + frame + 16, room.width() - 48)
        document.setTextWidth(width - frame - 16)
        height = round(document.size().height()) + frame + 16
        # What is left of the screen beside the texts above and the buttons below.
        self.help.setMinimumSize(width, _HELP_LEAST)
        others = self._wanted().height() - _HELP_LEAST
        self.help.setMinimumSize(width, max(_HELP_LEAST, min(height, room.height() - others)))
        self.fit_to_screen()

    def room(self) -> QSize:
        """The largest size the dialog may take: the screen's available area (task bars left
        out) less the window frame and title bar."""
        area = self._available().size()
        return QSize(area.width() - WINDOW_FRAME.width(), area.height() - WINDOW_FRAME.height())

    def fit_to_screen(self, *, grow_only: bool = False) -> None:
        """As large as the contents want, never larger than `room()`: past that the texts
        scroll inside and the buttons stay in view. `grow_only`: after the texts changed,
        never smaller than now (the user may have made it larger)."""
        room = self.room()
        self.setMaximumSize(room)
        wanted = self._wanted()
        if grow_only:
            wanted = wanted.expandedTo(self.size())
        self.resize(min(wanted.width(), room.width()), min(wanted.height(), room.height()))

    def _wanted(self) -> QSize:
        """The size that shows everything without scrolling (at most the room's width)."""
        room = self.room()
        layout, body_layout = self.layout(), self._body.layout()
        assert layout is not None and body_layout is not None, "set in __init__"
        margins = layout.contentsMargins()
        side = margins.left() + margins.right()
        wanted = max(self._body.sizeHint().width(), self._buttons.sizeHint().width()) + side
        width = min(max(self.minimumWidth(), wanted), room.width())
        # At the width left beside a scroll bar: wrapped texts are never taller than this.
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        body = body_layout.totalHeightForWidth(width - side - bar)
        # Around the scrolling part: margins, the buttons (as the style draws them), spacing.
        layout.activate()
        chrome = self.height() - self._scroll.viewport().height()
        return QSize(width, body + chrome)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.help.isHidden():
            self.fit_to_screen()

    # ---- closing

    def done(self, result: int) -> None:
        self._tasks.close()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:
        # A dialog closed without being shown (or without done()) still ends its worker.
        self._tasks.close()
        super().closeEvent(event)
