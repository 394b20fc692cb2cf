"""A fake OpenCV module with one webcam: BGR frames at a steady rate whose brightness follows
a known pattern (frame n has level `pattern(n)`), unplug/replug, and no-camera.

Frame n is due at `t0 + n / fps` on `clock` (t0 = when the first capture opened); `read()` waits
for the next one through `runtime.core.timing.wait_on`, so on a virtual clock
(support/virtual_clock.py) the camera runs in virtual time. `frames_read` logs (time, n) per read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime.core.timing import Clock, wait_on

CAP_PROP_FRAME_WIDTH = 3
CAP_PROP_FRAME_HEIGHT = 4
CAP_PROP_FPS = 5


class FakeCv2:
    CAP_PROP_FRAME_WIDTH = CAP_PROP_FRAME_WIDTH
    CAP_PROP_FRAME_HEIGHT = CAP_PROP_FRAME_HEIGHT
    CAP_PROP_FPS = CAP_PROP_FPS

    def __init__(
        self,
        *,
        fps: float = 30.0,
        size: tuple[int, int] = (480, 640),
        pattern: Callable[[int], int] | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.fps = fps
        self.size = size
        self.pattern = pattern or (lambda n: 40 + (n * 7) % 180)
        self.present = True
        self.plugged = True
        self.opened = 0
        self.frames_read: list[tuple[float, int]] = []  # (time, frame number)
        self.t0: float | None = None
        self.last_n = 0

    def VideoCapture(self, index: int) -> FakeCapture:
        self.opened += 1
        return FakeCapture(self, index)


class FakeCapture:
    def __init__(self, cv: FakeCv2, index: int) -> None:
        self.cv = cv
        self.ok = cv.present and cv.plugged and index == 0
        if cv.t0 is None:
            cv.t0 = cv.clock()

    def isOpened(self) -> bool:
        return self.ok

    def set(self, prop: int, value: Any) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        cv = self.cv
        assert cv.t0 is not None
        clock = cv.clock
        # (Never frame n twice: read at exactly its due time, rounding may put "now" just
        # before it.)
        n = max(int((clock() - cv.t0) * cv.fps) + 1, cv.last_n + 1)
        cv.last_n = n
        wait = cv.t0 + n / cv.fps - clock()
        if wait > 0:
            wait_on(threading.Event(), wait, clock)
        if not (self.ok and cv.plugged):
            return False, None
        level = cv.pattern(n)
        frame = np.full((*cv.size, 3), level, np.uint8)
        frame[:, :, 0] = level // 2  # B differs from R: the BGR->RGB swap shows
        cv.frames_read.append((clock(), n))
        return True, frame

    def release(self) -> None:
        self.ok = False
