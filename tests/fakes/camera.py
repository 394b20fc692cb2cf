"""A fake OpenCV module with one webcam: BGR frames at a steady rate whose brightness follows
a known pattern (frame n has level `pattern(n)`), unplug/replug, and no-camera."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

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
    ) -> None:
        self.fps = fps
        self.size = size
        self.pattern = pattern or (lambda n: 40 + (n * 7) % 180)
        self.present = True
        self.plugged = True
        self.opened = 0
        self.frames_read: list[tuple[float, int]] = []  # (time, frame number)
        self.t0: float | None = None

    def VideoCapture(self, index: int) -> FakeCapture:
        self.opened += 1
        return FakeCapture(self, index)


class FakeCapture:
    def __init__(self, cv: FakeCv2, index: int) -> None:
        self.cv = cv
        self.ok = cv.present and cv.plugged and index == 0
        if cv.t0 is None:
            cv.t0 = time.perf_counter()

    def isOpened(self) -> bool:
        return self.ok

    def set(self, prop: int, value: Any) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        cv = self.cv
        assert cv.t0 is not None
        n = int((time.perf_counter() - cv.t0) * cv.fps) + 1
        time.sleep(max(0.0, cv.t0 + n / cv.fps - time.perf_counter()))
        if not (self.ok and cv.plugged):
            return False, None
        level = cv.pattern(n)
        frame = np.full((*cv.size, 3), level, np.uint8)
        frame[:, :, 0] = level // 2  # B differs from R: the BGR->RGB swap shows
        cv.frames_read.append((time.perf_counter(), n))
        return True, frame

    def release(self) -> None:
        self.ok = False
