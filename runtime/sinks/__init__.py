"""Where live frames go: virtual camera, in-process preview, MP4 recorder (pacer thread).

`SinkSet` fans each published frame out to every sink and isolates them: a sink that raises is
counted and logged (rate-limited) and keeps being offered frames; it never stops the engine.
A sink that cannot open (no virtual-camera backend, unwritable file) is reported with its
reason and left out; the others run.

May use `runtime.media`, `runtime.model` and `runtime.core`; the engine above hands frames in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)


class SinkUnavailable(Exception):
    """A sink cannot open; the message says why, in user terms."""


class Sink(Protocol):
    @property
    def name(self) -> str: ...

    def open(self, *, fps: float) -> None:
        """Prepare for frames at `fps`; raise SinkUnavailable with the reason if impossible."""

    def send(self, frame: LiveFrame, repeat: bool) -> None: ...

    def close(self, timeout: float = 1.0) -> None: ...


@runtime_checkable
class AudioSink(Protocol):
    """A sink that also wants the input audio (the recorder muxes it, a GUI meters it). Called
    on the inference worker with 16 kHz samples starting at `first_sample` of the engine's
    audio timeline (frame k of the output at 25 fps depicts samples 640 k .. 640 k + 639)."""

    def add_audio(self, first_sample: int, samples: npt.NDArray[np.float32]) -> None: ...


@dataclass(frozen=True)
class SinkStatus:
    name: str
    open: bool
    frames: int
    errors: int
    last_error: str | None
    unavailable: str | None  # why it could not open, if it could not


@dataclass
class _Entry:
    sink: Sink
    open: bool = False
    frames: int = 0
    errors: int = 0
    last_error: str | None = None
    unavailable: str | None = None


ErrorListener = Callable[[str, str], None]
"""(sink name, message) -> None."""


class SinkSet:
    LOG_EVERY = 100  # after the first error, log one in this many

    def __init__(self, sinks: Sequence[Sink], *, on_error: ErrorListener | None = None) -> None:
        self._entries = [_Entry(sink=s) for s in sinks]
        self._on_error = on_error
        self._lock = threading.Lock()

    def open_all(self, *, fps: float) -> None:
        for entry in self._entries:
            try:
                entry.sink.open(fps=fps)
            except SinkUnavailable as exc:
                self._unavailable(entry, str(exc))
            except Exception as exc:
                logger.exception("sink %s failed to open", entry.sink.name)
                self._unavailable(entry, f"{type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    entry.open, entry.unavailable = True, None

    def _unavailable(self, entry: _Entry, why: str) -> None:
        logger.warning("%s unavailable: %s", entry.sink.name, why)
        with self._lock:
            entry.open, entry.unavailable = False, why
        self._notify(entry.sink.name, why)

    def send(self, frame: LiveFrame, repeat: bool) -> None:
        for entry in self._entries:
            if not entry.open:
                continue
            try:
                entry.sink.send(frame, repeat)
            except Exception as exc:
                with self._lock:
                    entry.errors += 1
                    entry.last_error = f"{type(exc).__name__}: {exc}"
                    count = entry.errors
                if count == 1 or count % self.LOG_EVERY == 0:
                    logger.error("sink %s failed (%d so far): %s", entry.sink.name, count, exc)
                    self._notify(entry.sink.name, f"{exc} ({count} failures)")
            else:
                entry.frames += 1

    def close_all(self, timeout: float = 1.0) -> None:
        for entry in self._entries:
            if not entry.open:
                continue
            try:
                entry.sink.close(timeout)
            except Exception as exc:
                logger.exception("sink %s failed to close", entry.sink.name)
                with self._lock:
                    entry.errors += 1
                    entry.last_error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                entry.open = False

    def statuses(self) -> list[SinkStatus]:
        with self._lock:
            return [
                SinkStatus(
                    name=e.sink.name,
                    open=e.open,
                    frames=e.frames,
                    errors=e.errors,
                    last_error=e.last_error,
                    unavailable=e.unavailable,
                )
                for e in self._entries
            ]

    def sinks(self) -> list[Sink]:
        return [e.sink for e in self._entries]

    def _notify(self, name: str, message: str) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(name, message)
        except Exception:
            logger.exception("sink error listener failed")
