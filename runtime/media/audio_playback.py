"""A sounddevice-like input that plays decoded audio in real time (`live --audio-file`).

`FilePlayback` offers the three calls `runtime.media.audio_capture` makes on the `sounddevice`
module, so a recording travels the very path a microphone does: ring buffer, watchdog, resampling,
features, pacing. Its stream runs a feeder thread that hands one block to the callback at each
absolute deadline and calls `finished_callback` after the last sample (the capture reports
ENDED for it). `started_at` is when the first block was due, so sample i of the file was
"captured" at `started_at + (i + 1) / rate`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock, wait_on

Array = npt.NDArray[np.float32]


class _NoFlags:
    input_overflow = False

    def __bool__(self) -> bool:
        return False


class PlaybackStream:
    def __init__(
        self,
        *,
        audio: Array,
        rate: int,
        blocksize: int,
        callback: Callable[..., None],
        finished_callback: Callable[[], None] | None,
        clock: Clock,
        owner: FilePlayback,
    ) -> None:
        self._audio = audio
        self._rate = rate
        self._block = max(1, blocksize or rate // 100)
        self._callback = callback
        self._finished = finished_callback
        self._clock = clock
        self._owner = owner
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.active = False

    def start(self) -> None:
        self._stop.clear()
        self.active = True
        self._thread = threading.Thread(target=self._feed, name="file-playback", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        self.active = False

    def close(self) -> None:
        self.stop()

    def _feed(self) -> None:
        flags = _NoFlags()
        t0 = self._clock()
        self._owner.started_at = t0
        total = self._audio.shape[0]
        pos = 0
        while pos < total and not self._stop.is_set():
            n = min(self._block, total - pos)
            due = t0 + (pos + n) / self._rate
            wait = due - self._clock()
            if wait > 0 and wait_on(self._stop, wait, self._clock):
                return
            block = self._audio[pos : pos + n].reshape(n, 1)
            self._callback(block, n, None, flags)
            pos += n
        if pos >= total:
            self.active = False
            if self._finished is not None:
                self._finished()


class FilePlayback:
    """A one-device "sound card" whose input is `audio` (mono float32 at `rate`)."""

    def __init__(
        self,
        audio: Array,
        rate: int,
        *,
        name: str = "audio file",
        clock: Clock = time.perf_counter,
    ) -> None:
        self._audio = np.ascontiguousarray(audio, np.float32).reshape(-1)
        self.rate = rate
        self.name = name
        self._clock = clock
        self.started_at = float("nan")

    @property
    def duration_s(self) -> float:
        return self._audio.shape[0] / self.rate

    def query_devices(self, device: Any = None, kind: str | None = None) -> dict[str, Any]:
        return {"name": self.name, "default_samplerate": float(self.rate), "max_input_channels": 1}

    def check_input_settings(
        self,
        device: Any = None,
        channels: int | None = None,
        dtype: Any = None,
        extra_settings: Any = None,
        samplerate: float | None = None,
    ) -> None:
        if samplerate is not None and int(samplerate) != self.rate:
            raise ValueError(f"{self.name} plays at {self.rate} Hz only")

    def InputStream(self, **options: Any) -> PlaybackStream:
        return PlaybackStream(
            audio=self._audio,
            rate=self.rate,
            blocksize=int(options.get("blocksize") or 0),
            callback=options["callback"],
            finished_callback=options.get("finished_callback"),
            clock=self._clock,
            owner=self,
        )
