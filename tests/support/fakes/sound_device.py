"""A fake `sounddevice` module: one microphone that "hears" a fixture recording in real time.

Blocks reach the callback from a player thread on absolute deadlines, like a sound card. The
recording keeps playing in wall-clock time whatever the streams do, so sample i of it is heard
at `t0 + i / rate` (t0 = when the first stream started); `deliveries` logs when each block was
actually handed over. `unplug()` stops the callbacks without any error (what a yanked USB
microphone looks like) and makes new streams fail; `replug()` undoes it; `remove_device()`
makes the machine have no input device at all. `plug_in_later(name)` connects a second
microphone that, as with PortAudio, is listed only once the library is restarted
(`_terminate()` then `_initialize()`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.core.timing import Clock, wait_on


class PortAudioError(Exception):
    pass


@dataclass
class Flags:
    input_overflow: bool = False

    def __bool__(self) -> bool:
        return self.input_overflow


@dataclass(frozen=True)
class Delivery:
    when: float  # perf_counter when the callback was called
    first_sample: int  # position in the recording
    frames: int


class FakeStream:
    def __init__(
        self,
        device: FakeSoundDevice,
        rate: int,
        block: int,
        callback: Callable[..., None],
        finished: Callable[[], None] | None,
    ) -> None:
        self.device, self.rate, self.block = device, rate, block
        self.callback, self.finished = callback, finished
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.active = False
        self.closed = False

    def start(self) -> None:
        self.active = True
        self.thread = threading.Thread(target=self._play, name="fake-mic", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(1.0)
        self.active = False

    def close(self) -> None:
        self.stop()
        self.closed = True

    def _play(self) -> None:
        dev = self.device
        t0 = dev.epoch()
        # Start at the nearest block boundary of the recording's wall-clock timeline (the
        # very first stream starts at sample 0).
        clock = dev.clock
        pos = round((clock() - t0) * self.rate / self.block) * self.block
        while not self.stop_event.is_set():
            due = t0 + (pos + self.block) / self.rate
            wait = due - clock()
            if wait > 0 and wait_on(self.stop_event, wait, clock):
                return
            if not dev.plugged:
                pos += self.block
                continue
            data = dev.samples(pos, self.block).reshape(-1, 1)
            flags = Flags(input_overflow=dev.take_overflow())
            now = clock()
            self.callback(data, self.block, None, flags)
            dev.deliveries.append(Delivery(when=now, first_sample=pos, frames=self.block))
            pos += self.block


class FakeSoundDevice:
    """Use an instance where the `sounddevice` module is expected."""

    PortAudioError = PortAudioError

    def __init__(
        self,
        audio: np.ndarray,
        rate: int,
        *,
        name: str = "Fake USB Mic",
        accepted_rates: tuple[int, ...] | None = None,
        loop: bool = False,
        block: int | None = None,
        default_rate: int | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.clock = clock  # a virtual clock runs the microphone in virtual time
        self.audio = np.asarray(audio, np.float32).reshape(-1)
        self.rate = rate
        self.name = name
        self.accepted_rates = accepted_rates or (rate,)
        self.default_rate = default_rate or rate  # what the device claims; may be unusable
        self.loop = loop
        self.forced_block = block
        self.plugged = True
        self.present = True
        self.deliveries: list[Delivery] = []
        self.streams: list[FakeStream] = []
        self._t0: float | None = None
        self._overflow = False
        self._lock = threading.Lock()
        self.terminated = 0
        self.initialized = 0
        self._connected_later: list[str] = []  # plugged in since PortAudio started
        self._listed_later: list[str] = []  # of those, what PortAudio's list holds

    def plug_in_later(self, name: str) -> None:
        """A microphone connected after start: not listed until PortAudio restarts."""
        self._connected_later.append(name)

    # controls
    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True

    def remove_device(self) -> None:
        self.present = False
        self.plugged = False

    def inject_overflow(self) -> None:
        self._overflow = True

    def take_overflow(self) -> bool:
        flag, self._overflow = self._overflow, False
        return flag

    def epoch(self) -> float:
        with self._lock:
            if self._t0 is None:
                self._t0 = self.clock()
            return self._t0

    def samples(self, pos: int, n: int) -> np.ndarray:
        total = self.audio.shape[0]
        if self.loop:
            return self.audio[np.arange(pos, pos + n) % total]
        out = np.zeros(n, np.float32)
        if pos < total:
            chunk = self.audio[pos : pos + n]
            out[: chunk.shape[0]] = chunk
        return out

    def heard_at(self, sample: int) -> float:
        """When sample `sample` of the recording was heard (and, if plugged, delivered)."""
        assert self._t0 is not None
        return self._t0 + (sample + 1) / self.rate

    # sounddevice's private PortAudio restart (re-lists devices)
    def _terminate(self) -> None:
        self.terminated += 1

    def _initialize(self) -> None:
        self.initialized += 1
        self._listed_later = list(self._connected_later)

    # the sounddevice API
    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if not self.present:
            raise PortAudioError("Error querying device -1")
        info = {
            "name": self.name,
            "default_samplerate": float(self.default_rate),
            "max_input_channels": 1,
        }
        if kind is not None or device is not None:
            return info
        later = [dict(info, name=name) for name in self._listed_later]
        return [info, *later]

    def check_input_settings(
        self,
        device: Any = None,
        channels: int | None = None,
        dtype: Any = None,
        extra_settings: Any = None,
        samplerate: float | None = None,
    ) -> None:
        if not self.present:
            raise PortAudioError("Error querying device -1")
        if samplerate is not None and int(samplerate) not in self.accepted_rates:
            raise PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def InputStream(self, **options: Any) -> FakeStream:
        if not self.plugged:
            raise PortAudioError(
                "Error opening InputStream: Device unavailable [PaErrorCode -9985]"
            )
        rate = int(options["samplerate"])
        self.check_input_settings(samplerate=rate)
        block = self.forced_block or int(options.get("blocksize") or rate // 100)
        stream = FakeStream(
            self, rate, block, options["callback"], options.get("finished_callback")
        )
        self.streams.append(stream)
        return stream
