"""Webcam frames for the video-driven live mode, through an OpenCV-like module (own `webcam`
thread; `latest` is called from the inference worker).

A reader thread calls `read()` (which blocks until the camera delivers), stamps each frame
with its capture time and keeps only the newest (newest wins: the inference worker never
works on a stale frame). A camera that stops delivering is reopened with backoff; each state
change and each failed attempt to reopen it is reported (`retries` counts the attempts).
The module is passed in, so tests use a fake camera. Every timed wait goes through
`runtime.core.timing.wait_on` on the injected clock, so tests run the reader in virtual time.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock, wait_on

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


class WebcamState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"
    LOST = "lost"
    NO_CAMERA = "no_camera"


@dataclass(frozen=True)
class WebcamConfig:
    index: int = 0
    width: int = 640
    height: int = 480
    fps: float = 30.0
    failures_before_lost: int = 10
    retry_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Grab:
    seq: int
    capture: float  # perf_counter when read() returned the frame
    rgb: Image


class WebcamSource:
    def __init__(
        self,
        *,
        cv2: Any,
        config: WebcamConfig,
        clock: Clock = time.perf_counter,
        on_state: Callable[[WebcamState, str | None], None] | None = None,
    ) -> None:
        self._cv2 = cv2
        self.config = config
        self._clock = clock
        self._on_state = on_state
        self._lock = threading.Lock()
        # Set (under the lock) when a new frame or the stop arrives; `latest` clears it under
        # the lock before it looks, so no frame can slip in between look and wait.
        self._fresh = threading.Event()
        self._latest: Grab | None = None
        self._seq = 0
        self.state = WebcamState.STOPPED
        self.error: str | None = None
        self.retries = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="webcam", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        self._stop.set()
        with self._lock:
            self._fresh.set()
        thread, self._thread = self._thread, None
        ok = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            ok = not thread.is_alive()
        self._set(WebcamState.STOPPED, None)
        return ok

    def latest(self, *, after: int, timeout: float) -> Grab | None:
        """The newest frame with seq > `after`, waiting up to `timeout` for one."""
        deadline = self._clock() + timeout
        while True:
            with self._lock:
                self._fresh.clear()
                grab = self._latest
            if grab is not None and grab.seq > after:
                return grab
            left = deadline - self._clock()
            if left <= 0 or self._stop.is_set():
                return None
            wait_on(self._fresh, left, self._clock)

    def _set(self, state: WebcamState, error: str | None, *, retry: bool = False) -> None:
        changed = state is not self.state or error != self.error
        if not changed and not retry:
            return
        self.state, self.error = state, error
        if retry:
            self.retries += 1
        if error and changed:
            logger.warning("webcam %s: %s", state.value, error)
        if self._on_state is not None:
            try:
                self._on_state(state, error)
            except Exception:
                logger.exception("webcam state listener failed")

    def _open(self) -> Any:
        cv2, cfg = self._cv2, self.config
        cap = cv2.VideoCapture(cfg.index)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        return cap

    def _run(self) -> None:
        attempt = 0
        backoff = self.config.retry_backoff_s
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                self._set(
                    WebcamState.NO_CAMERA,
                    f"camera {self.config.index} cannot be opened",
                    retry=attempt > 0,
                )
                wait_on(self._stop, backoff[min(attempt, len(backoff) - 1)], self._clock)
                attempt += 1
                continue
            failures = 0
            try:
                while not self._stop.is_set() and failures < self.config.failures_before_lost:
                    ok, bgr = cap.read()
                    now = self._clock()
                    if not ok or bgr is None:
                        failures += 1
                        wait_on(self._stop, 0.01, self._clock)
                        continue
                    failures, attempt = 0, 0
                    self._set(WebcamState.RUNNING, None)
                    rgb = np.ascontiguousarray(np.asarray(bgr, np.uint8)[:, :, ::-1])
                    with self._lock:
                        self._seq += 1
                        self._latest = Grab(seq=self._seq, capture=now, rgb=rgb)
                        self._fresh.set()
            finally:
                cap.release()
            if not self._stop.is_set():
                self._set(WebcamState.LOST, "the camera stopped delivering frames")
                wait_on(self._stop, backoff[min(attempt, len(backoff) - 1)], self._clock)
                attempt += 1
