"""Shared pieces of the live-engine tests: stub models, avatars, fixture speech, recorders."""

from __future__ import annotations

import threading
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.engine.live.avatar import LiveAvatar, encode_avatar
from runtime.engine.live.engine import EngineEvent, EngineListener, HopRecord
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import ModelSet, SessionOptions
from runtime.model.versions import ModelVersion
from runtime.sinks.frame import LiveFrame
from runtime.sinks.preview import PreviewSink
from tests.support.stub_graphs import write_stub_graphs

CPU = SessionOptions(providers=("CPUExecutionProvider",), intra_op_threads=1)


def stub_models(
    folder: Path, *, velocity_gain: float = 1.0, version: ModelVersion | None = None
) -> ModelSet:
    graphs = write_stub_graphs(folder, velocity_gain=velocity_gain, version=version)
    return open_model_set(graphs, options=CPU)


def grey_avatar(models: ModelSet, level: int, name: str | None = None) -> LiveAvatar:
    """A flat avatar: with the stub encoder its id value is level / 255."""
    size = models.source_size
    image = np.full((size, size, 3), level, np.uint8)
    return encode_avatar(models["avatar_encoder"], image, size=size, name=name or f"grey{level}")


def wav_16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return pcm.astype(np.float32) / 32768.0


def write_wav_16k(path: Path, audio: np.ndarray) -> Path:
    """`audio` (float, full scale 1.0) as a 16 kHz mono 16-bit WAV at `path` (what `paplay`
    plays into the test's audio server)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((audio * 32767).astype(np.int16).tobytes())
    return path


@dataclass
class Tap:
    """Collects what the engine tells: events, hops, and every published frame (preview)."""

    events: list[EngineEvent] = field(default_factory=list)
    hops: list[HopRecord] = field(default_factory=list)
    frames: list[tuple[float, LiveFrame]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep_images: bool = False
    clock: Callable[[], float] = time.perf_counter  # stamps frames (a virtual clock in tests)

    def listener(self) -> EngineListener:
        return EngineListener(on_event=self._event, on_hop=self._hop)

    def preview(self) -> PreviewSink:
        return PreviewSink(self._frame)

    def _event(self, e: EngineEvent) -> None:
        with self.lock:
            self.events.append(e)

    def _hop(self, h: HopRecord) -> None:
        with self.lock:
            self.hops.append(h)

    def _frame(self, f: LiveFrame) -> None:
        image = f.image if self.keep_images else f.image[::64, ::64].copy()
        with self.lock:
            self.frames.append((self.clock(), LiveFrame(f.index, image, f.timing)))

    def kinds(self, kind: str) -> list[str]:
        with self.lock:
            return [e.message for e in self.events if e.kind == kind]

    def wait_event(self, kind: str, contains: str, timeout: float) -> float | None:
        """Time of the first matching event (on `clock`), waiting up to `timeout`."""
        end = self.clock() + timeout
        sleep = getattr(self.clock, "sleep", time.sleep)  # a virtual clock's own sleep
        while True:
            with self.lock:
                for e in self.events:
                    if e.kind == kind and contains in e.message:
                        return e.when
            if self.clock() >= end:
                return None
            sleep(0.01)


def assert_on_deadlines(times: Sequence[float], period: float, tick_moves: int) -> None:
    """Publications on absolute deadlines, no stall and no burst: one period apart, except
    where the pacer moved its ticks onto the frames (`tick_moves`, each by at most half a
    period: one gap, or two where the minimum gap held the next tick back)."""
    gaps = np.diff(np.asarray(times, np.float64))
    assert gaps.min() >= 0.5 * period - 1e-9 and gaps.max() <= 1.5 * period + 1e-9, gaps
    off = int(np.sum(~np.isclose(gaps, period)))
    assert off <= 2 * tick_moves, (off, tick_moves)
