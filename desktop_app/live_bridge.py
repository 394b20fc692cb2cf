"""The live engine as a Qt object (lives on the GUI thread; engine work runs on its worker).

Start, avatar switches, recording and stop run one after another on the bridge's own worker
thread, so the GUI never waits for the model. The engine's callbacks arrive on engine threads
and only store data and emit signals. Frames are coalesced: the engine thread keeps the newest
frame and emits at most one pending notification, so a busy GUI shows fewer frames instead of
queueing them. Pose, quality and output settings are cheap, thread-safe setters and are
applied straight away. `shutdown()` stops the session and joins the worker, so closing the
window mid-inference ends cleanly.

Problems come out as `problem` (a source that cannot open, a model that cannot load, the engine
stopping) and `source_health` (the source lost and retrying, or back): the engine's source
events only wake the GUI thread (a bare signal), which then reads the session's state. The
microphone level is read from the session's capture-side meter 30 times a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from desktop_app.images import RGB, rgb_to_qimage
from desktop_app.services import (
    LiveCallbacks,
    LiveConfig,
    LiveEngine,
    LiveSession,
    LiveStats,
    ModelLoadFailed,
    SourceHealth,
    SourceUnavailable,
    VirtualCameraInfo,
)
from desktop_app.settings import CallAudio, Output, Pose, Quality, SourceKind
from desktop_app.tasks import TaskRunner

logger = logging.getLogger(__name__)

STATS_INTERVAL_MS = 500
LEVEL_INTERVAL_MS = 33  # the meter follows the microphone 30 times a second


@dataclass(frozen=True)
class LiveProblem:
    """Why going live failed or stopped, for the window's alert bar."""

    topic: str  # "source", "model" or "engine"
    message: str
    source: SourceKind | None = None  # for "source": which kind could not be opened


class LiveState(Enum):
    IDLE = "idle"
    STARTING = "starting"
    LIVE = "live"
    STOPPING = "stopping"


class _FrameSlot:
    """The newest frame, handed from the engine thread to the GUI thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: QImage | None = None
        self._pending = False

    def put(self, frame: QImage) -> bool:
        """Store the frame; True when the GUI needs a notification (none is pending)."""
        with self._lock:
            self._frame = frame
            notify = not self._pending
            self._pending = True
            return notify

    def take(self) -> QImage | None:
        with self._lock:
            frame, self._frame, self._pending = self._frame, None, False
            return frame


class _SessionBox:
    """The running session, shared by the worker's jobs (set and cleared only on the worker)."""

    def __init__(self) -> None:
        self.session: LiveSession | None = None


class EngineBridge(QObject):
    state_changed = Signal(object)  # LiveState
    frame_ready = Signal(QImage)
    stats_updated = Signal(object)  # LiveStats
    error = Signal(str)
    avatar_switched = Signal(str)  # avatar id
    recording_changed = Signal(bool, str)  # recording?, path
    virtual_camera_changed = Signal(object)  # VirtualCameraInfo
    problem = Signal(object)  # LiveProblem
    source_health = Signal(object)  # SourceHealth, when it changes
    level_updated = Signal(object)  # AudioLevel
    _frame_available = Signal()
    _engine_failed = Signal(str)
    _source_event = Signal()

    def __init__(self, engine: LiveEngine, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._runner = TaskRunner("engine", self)
        self._slot = _FrameSlot()
        self._box = _SessionBox()
        self._session: LiveSession | None = None  # GUI thread's view, set when start finishes
        self._state = LiveState.IDLE
        self._pose: Pose | None = None
        self._quality: Quality | None = None
        self._output: Output | None = None
        self._call_audio: CallAudio | None = None
        self._muted = False
        self._talking = False
        self._recording: Path | None = None
        self._closed = False
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(STATS_INTERVAL_MS)
        self._stats_timer.timeout.connect(self._poll_stats)
        self._level_timer = QTimer(self)
        self._level_timer.setInterval(LEVEL_INTERVAL_MS)
        self._level_timer.timeout.connect(self._poll_level)
        self._health: SourceHealth | None = None
        self._frame_available.connect(self._deliver_frame)
        self._engine_failed.connect(self._on_engine_failed)
        self._source_event.connect(self._poll_stats)

    # ---- state

    @property
    def state(self) -> LiveState:
        return self._state

    @property
    def recording(self) -> Path | None:
        return self._recording

    @property
    def session(self) -> LiveSession | None:
        return self._session

    def _set_state(self, state: LiveState) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    # ---- start and stop

    def start(self, config: LiveConfig, *, confirm: Callable[[], bool] | None = None) -> None:
        """Go live. With `confirm`: the source is checked first (on the worker), then
        `confirm()` is asked on the GUI thread, and only a yes starts the session; a no goes
        back to idle."""
        if self._closed or self._state != LiveState.IDLE:
            return
        self._pose, self._quality, self._output = config.pose, config.quality, config.output
        self._call_audio = config.call_audio
        self._set_state(LiveState.STARTING)
        self._health = None
        if confirm is None:
            self._start_session(config)
            return
        engine = self.engine

        def confirmed(_: object) -> None:
            if self._closed or self._state != LiveState.STARTING:  # stopped meanwhile
                return
            answer = confirm()  # a dialog: the window may close or stop meanwhile
            if self._closed or self._state != LiveState.STARTING:
                return
            if answer:
                self._start_session(config)
            else:
                self._set_state(LiveState.IDLE)

        self._runner.submit(
            lambda: engine.check_source(config), on_done=confirmed, on_error=self._start_failed
        )

    def _start_session(self, config: LiveConfig) -> None:
        callbacks = LiveCallbacks(
            on_frame=self._on_frame,
            on_error=self._engine_failed.emit,
            on_source=self._source_event.emit,
        )
        box, engine = self._box, self.engine

        def job() -> LiveSession:
            box.session = engine.start(config, callbacks)
            return box.session

        self._runner.submit(job, on_done=self._started, on_error=self._start_failed)

    def stop(self) -> None:
        if self._state in (LiveState.IDLE, LiveState.STOPPING):
            return
        self._set_state(LiveState.STOPPING)
        self._stats_timer.stop()
        self._level_timer.stop()
        self._runner.submit(self._stop_job, on_done=self._stopped, on_error=self._stop_failed)

    def _stop_job(self) -> Path | None:
        session, self._box.session = self._box.session, None
        if session is None:
            return None
        saved = None
        try:
            saved = session.stop_recording()
        except Exception:
            logger.exception("could not finish the recording")
        session.stop()
        return saved

    def _started(self, session: LiveSession) -> None:
        if self._state != LiveState.STARTING:  # Stop was pressed meanwhile; stop() queued it
            return
        self._session = session
        # Settings changed while starting reach the session now.
        if self._pose is not None:
            session.set_pose(self._pose)
        if self._quality is not None:
            session.set_quality(self._quality)
        if self._output is not None:
            session.set_output(self._output)
        if self._call_audio is not None:
            session.set_call_audio(self._call_audio)
        session.set_muted(self._muted)
        session.set_talking(self._talking)
        self.virtual_camera_changed.emit(session.virtual_camera)
        self._set_state(LiveState.LIVE)
        self._stats_timer.start()
        self._level_timer.start()
        self._poll_stats()

    def _start_failed(self, exc: BaseException) -> None:
        self._session = None
        self._set_state(LiveState.IDLE)
        if isinstance(exc, SourceUnavailable):
            self.problem.emit(LiveProblem("source", str(exc), exc.kind))
        elif isinstance(exc, ModelLoadFailed):
            self.problem.emit(LiveProblem("model", str(exc)))
        else:
            self.error.emit(f"Could not go live: {exc}")

    def _stopped(self, saved: Path | None) -> None:
        self._session = None
        self._slot.take()
        if self._recording is not None:
            self._recording = None
            self.recording_changed.emit(False, str(saved or ""))
        self._set_state(LiveState.IDLE)

    def _stop_failed(self, exc: BaseException) -> None:
        logger.error("stopping the engine failed: %s", exc)
        self._stopped(None)

    def _on_engine_failed(self, message: str) -> None:
        if self._state in (LiveState.STARTING, LiveState.LIVE):
            self.problem.emit(LiveProblem("engine", message))
            self.stop()

    # ---- live changes

    def switch_avatar(self, avatar_id: str, avatar: RGB) -> None:
        """Send a new avatar to the running session (encoded on the worker)."""
        if self._state not in (LiveState.STARTING, LiveState.LIVE):
            return
        box = self._box

        def job() -> str:
            session = box.session
            if session is not None:
                session.set_avatar(avatar, avatar_id)
            return avatar_id

        self._runner.submit(
            job,
            on_done=self.avatar_switched.emit,
            on_error=lambda exc: self.error.emit(f"Could not switch the avatar: {exc}"),
        )

    def set_pose(self, pose: Pose) -> None:
        self._pose = pose
        if self._session is not None:
            self._session.set_pose(pose)

    def set_quality(self, quality: Quality) -> None:
        self._quality = quality
        if self._session is not None:
            self._session.set_quality(quality)

    def set_output(self, output: Output) -> None:
        self._output = output
        if self._session is not None:
            self._session.set_output(output)

    def set_call_audio(self, call_audio: CallAudio) -> None:
        self._call_audio = call_audio
        if self._session is not None:
            self._session.set_call_audio(call_audio)

    def set_muted(self, muted: bool) -> None:
        self._muted = muted
        if self._session is not None:
            self._session.set_muted(muted)

    def set_talking(self, held: bool) -> None:
        self._talking = held
        if self._session is not None:
            self._session.set_talking(held)

    def check_virtual_camera(self) -> None:
        """Probe the virtual camera on the worker; the answer comes as virtual_camera_changed.

        Only while idle: a running session holds the camera and reports it itself."""
        if self._closed or self._state != LiveState.IDLE:
            return
        engine = self.engine

        def probe() -> VirtualCameraInfo:
            try:
                return engine.virtual_camera_status()
            except Exception as exc:  # a broken backend is a finding, not a crash
                logger.exception("virtual camera check failed")
                return VirtualCameraInfo(False, None, None, str(exc))

        self._runner.submit(probe, on_done=self.virtual_camera_changed.emit)

    # ---- recording

    def start_recording(self, path: Path) -> None:
        if self._state != LiveState.LIVE or self._recording is not None:
            return
        box = self._box
        self._recording = path

        def job() -> Path:
            if box.session is None:
                raise RuntimeError("not live")
            box.session.start_recording(path)
            return path

        self._runner.submit(
            job,
            on_done=lambda p: self.recording_changed.emit(True, str(p)),
            on_error=self._recording_failed,
        )

    def stop_recording(self) -> None:
        if self._recording is None:
            return
        box = self._box

        def job() -> Path | None:
            return None if box.session is None else box.session.stop_recording()

        self._runner.submit(job, on_done=self._recording_stopped, on_error=self._recording_failed)

    def _recording_stopped(self, saved: Path | None) -> None:
        self._recording = None
        self.recording_changed.emit(False, str(saved or ""))

    def _recording_failed(self, exc: BaseException) -> None:
        self._recording = None
        self.recording_changed.emit(False, "")
        self.error.emit(f"Recording failed: {exc}")

    # ---- frames and stats

    def _on_frame(self, rgb: RGB) -> None:
        """Engine thread: keep the newest frame; notify the GUI unless a notice is pending."""
        if self._closed:
            return
        if self._slot.put(rgb_to_qimage(rgb)):
            self._frame_available.emit()

    def _deliver_frame(self) -> None:
        frame = self._slot.take()
        if frame is not None and self._state == LiveState.LIVE:
            self.frame_ready.emit(frame)

    def _poll_stats(self) -> None:
        if self._session is None:
            return
        try:
            stats: LiveStats = self._session.stats()
        except Exception as exc:
            logger.debug("stats unavailable: %s", exc)
            return
        self.stats_updated.emit(stats)
        if stats.source is not None and stats.source != self._health:
            self._health = stats.source
            self.source_health.emit(stats.source)

    def _poll_level(self) -> None:
        if self._session is None:
            return
        try:
            level = self._session.audio_level()
        except Exception as exc:
            logger.debug("level unavailable: %s", exc)
            return
        if level is not None:
            self.level_updated.emit(level)

    # ---- closing

    def shutdown(self, *, timeout: float = 20.0) -> bool:
        """Stop the session (if any) and join the worker. Safe to call more than once."""
        if self._closed:
            return True
        self._stats_timer.stop()
        self._level_timer.stop()
        if self._state != LiveState.IDLE:
            self._runner.submit(self._stop_job)
        self._closed = True
        ended = self._runner.shutdown(timeout=timeout)
        self._session = None
        self._state = LiveState.IDLE
        return ended
