"""A fake pyvirtualcam backend, registered with `pyvirtualcam.register_backend`.

It records, for every frame the camera receives, the perf_counter time and a probe of the
pixels (by default a 1/8 subsampled copy), so tests can check rate, order and content without
keeping gigabytes of frames. `FailingBackend` raises on send after a number of frames.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pyvirtualcam


class RecordingBackend:
    instances: ClassVar[list[RecordingBackend]] = []
    probe: ClassVar[Callable[[np.ndarray], Any]] = staticmethod(lambda f: f[::8, ::8].copy())
    clock: ClassVar[Callable[[], float]] = staticmethod(time.perf_counter)
    """What stamps `times` (a test on a virtual clock sets it, and sets it back)."""

    def __init__(
        self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.fourcc = fourcc
        self._device = device or "FakeCam 0"
        self.times: list[float] = []
        self.probes: list[Any] = []
        self.closed = False
        self.lock = threading.Lock()
        RecordingBackend.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        now = type(self).clock()
        image = frame.reshape(self.height, self.width, 3)
        with self.lock:
            self.times.append(now)
            self.probes.append(type(self).probe(image))

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int | None:
        return None


class FailingBackend(RecordingBackend):
    fail_after: ClassVar[int] = 10

    def send(self, frame: np.ndarray) -> None:
        if len(self.times) >= self.fail_after:
            raise OSError("fake camera went away")
        super().send(frame)


class UnopenableBackend:
    def __init__(self, **kw: Any) -> None:
        raise RuntimeError("the fake camera is in use by another application")


def register() -> None:
    RecordingBackend.instances.clear()
    pyvirtualcam.register_backend("fake", RecordingBackend)
    pyvirtualcam.register_backend("fake-failing", FailingBackend)
    pyvirtualcam.register_backend("fake-busy", UnopenableBackend)
