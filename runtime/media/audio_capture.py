"""Microphone capture through a sounddevice-like module, at the device's native rate.

Threads: the audio callback (PortAudio's thread) only copies each block into a ring buffer that
was allocated when the stream opened, notes when the block arrived and counts overflows.
`read()` (the inference worker) takes what is new, resamples it to 16 kHz with soxr and tells
when its last sample was captured. A watchdog thread notices a stream whose callbacks stop
(unplugged microphone, dead server), closes it and reopens it with backoff, and reports each
change of state.

The callback also applies the mute/push-to-talk switch (`runtime.media.audio_gate.MicSwitch`)
to each block before it is stored, and hands the block to an optional tap (the virtual
microphone's delay line) with its native rate and arrival time; both are cheap copies.

The module is passed in (the real `sounddevice`, a fake in tests, or `runtime.media.audio_playback`
for a file fed in real time), so everything here runs without a sound card.
"""

from __future__ import annotations

import bisect
import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import soxr

from runtime.core.timing import Clock, wait_on
from runtime.media.audio_gate import MicSwitch
from runtime.media.stream_close import stop_and_close
from runtime.model.contract import SAMPLE_RATE

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]

FALLBACK_RATES = (48_000, 44_100, 32_000, 22_050, 16_000)

CaptureTap = Callable[[Array, int, float], None]
"""(mono block at the native rate, that rate, perf_counter time it arrived) -> None; called on
PortAudio's callback thread, so it must only copy."""


class InputStreamLike(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class SoundDeviceLike(Protocol):
    """The part of the `sounddevice` module used here."""

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any: ...
    def check_input_settings(
        self,
        device: Any = None,
        channels: int | None = None,
        dtype: Any = None,
        extra_settings: Any = None,
        samplerate: float | None = None,
    ) -> None: ...
    def InputStream(self, **options: Any) -> InputStreamLike: ...


class CaptureState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"  # stream open, no block yet
    RUNNING = "running"
    LOST = "lost"  # callbacks stopped or the stream died; retrying
    NO_DEVICE = "no_device"  # no input device could be opened; retrying
    ENDED = "ended"  # a finite source (a file) played to its end


@dataclass(frozen=True)
class CaptureConfig:
    device: int | str | None = None
    ring_seconds: float = 10.0
    block_seconds: float = 0.01
    stall_timeout_s: float = 2.0
    """Callbacks silent this long = the device is gone (then it is reopened)."""
    retry_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    watchdog_period_s: float = 0.05
    resample_quality: str = "HQ"
    finite: bool = False
    """A source that ends (file playback): its end is ENDED, not LOST."""
    refresh_devices: bool = False
    """Restart PortAudio before each retry so a re-plugged device is seen. Only when nothing
    else in the process uses PortAudio at the time (the headless CLI); a GUI listing devices
    on another thread must not have the library restarted under it."""


@dataclass(frozen=True)
class CaptureStatus:
    state: CaptureState
    device: str
    native_rate: int
    callbacks: int
    overflows: int
    ring_overruns: int
    restarts: int
    error: str | None


@dataclass(frozen=True)
class CapturedAudio:
    """New 16 kHz samples since the last read, and when the last one was captured."""

    samples: Array
    end_time: float  # perf_counter; nan if no samples
    restarted: bool  # a new stream began: these samples do not continue the previous ones


class _Flushed:
    """Stands in for a resampler after its final flush."""

    def resample_chunk(self, raw: Array, last: bool = False) -> Array:
        return np.zeros(0, np.float32)


class _Ring:
    """One open stream's buffers; written only by its callback, allocated before it starts."""

    def __init__(self, rate: int, seconds: float, block_hint: int) -> None:
        self.rate = rate
        self.data = np.zeros(max(int(rate * seconds), 4 * block_hint), np.float32)
        n_blocks = max(64, int(seconds * rate / max(1, block_hint)) * 4)
        self.block_end = np.zeros(n_blocks, np.int64)
        self.block_time = np.zeros(n_blocks, np.float64)
        self.written = 0  # samples, published after the data and block record
        self.blocks = 0
        self.last_callback = math.nan
        self.overflows = 0
        self.callbacks = 0
        self.finished = False


class AudioCapture:
    def __init__(
        self,
        *,
        sd: SoundDeviceLike,
        config: CaptureConfig,
        clock: Clock = time.perf_counter,
        on_status: Callable[[CaptureStatus], None] | None = None,
        switch: MicSwitch | None = None,
        tap: CaptureTap | None = None,
    ) -> None:
        self._sd = sd
        self._switch = switch
        self._tap = tap
        self.config = config
        self._clock = clock
        self._on_status = on_status
        self._lock = threading.Lock()  # watchdog vs reader vs start/stop; never the callback
        self._state = CaptureState.STOPPED
        self._stream: InputStreamLike | None = None
        self._ring: _Ring | None = None
        self._device_name = ""
        self._native_rate = 0
        self._restarts = 0
        self._overflows_before = 0
        self._callbacks_before = 0
        self._error: str | None = None
        self._attempt = 0
        self._retry_at = 0.0
        self._opened_at = 0.0
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        # reader state (inference worker)
        self._reading: _Ring | None = None
        self._read_pos = 0
        self._read_blocks = 0
        self._records: deque[tuple[int, float]] = deque()  # (block end, time) seen by the reader
        self._resampler: Any = None
        self._out_total = 0
        self._in_origin = 0  # input sample that output sample `_out_origin` stands for
        self._out_origin = 0
        self._gap = False  # the reader fell a whole ring behind: samples were lost
        self._ring_overruns = 0
        self._outbox: deque[CaptureStatus] = deque()

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._watchdog is not None:
                raise RuntimeError("capture already started")
            self._stop.clear()
            self._attempt = 0
            self._open_locked()
        self._deliver()
        self._watchdog = threading.Thread(target=self._watch, name="audio-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self, timeout: float = 1.0) -> bool:
        self._stop.set()
        thread, self._watchdog = self._watchdog, None
        ok = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            ok = not thread.is_alive()
        with self._lock:
            self._close_locked()
            self._set_state_locked(CaptureState.STOPPED, None)
        self._deliver()
        return ok

    def status(self) -> CaptureStatus:
        with self._lock:
            return self._status_locked()

    @property
    def state(self) -> CaptureState:
        return self._state

    # -- reading (inference worker) ----------------------------------------------------------

    def read(self) -> CapturedAudio:
        with self._lock:
            ring = self._ring
        restarted = False
        if ring is not self._reading:
            # A new stream (or none): what the old one still held is dropped, it is at most
            # the blocks that arrived since the last read, before the device was lost.
            self._reading = None
            if ring is not None:
                self._begin(ring)
                restarted = True
        if self._reading is None:
            return CapturedAudio(np.zeros(0, np.float32), math.nan, restarted)
        samples = self._drain(self._reading)
        end_time = self._time_of_output(self._out_total - 1) if samples.size else math.nan
        if samples.size and self._gap:
            restarted, self._gap = True, False  # what follows a gap is a new clock segment
        return CapturedAudio(samples=samples, end_time=end_time, restarted=restarted)

    def _begin(self, ring: _Ring) -> None:
        self._reading = ring
        self._read_pos = 0
        self._read_blocks = 0
        self._records.clear()
        self._out_total = self._in_origin = self._out_origin = 0
        self._gap = False
        self._resampler = None
        if ring.rate != SAMPLE_RATE:
            self._resampler = soxr.ResampleStream(
                ring.rate, SAMPLE_RATE, 1, dtype="float32", quality=self.config.resample_quality
            )

    def _drain(self, ring: _Ring) -> Array:
        finished = ring.finished  # read before the counters: no block can follow it
        blocks = ring.blocks
        n_rec = ring.block_end.shape[0]
        for b in range(max(self._read_blocks, blocks - n_rec), blocks):
            self._records.append(
                (int(ring.block_end[b % n_rec]), float(ring.block_time[b % n_rec]))
            )
        self._read_blocks = blocks
        end = self._records[-1][0] if self._records else 0
        size = ring.data.shape[0]
        start = self._read_pos
        if end - start > size:
            # The oldest audio was overwritten before it was read (the reader was busy for
            # longer than the ring holds). Output sample times must skip the lost span too,
            # or every later capture time would be late by it, more at every overrun.
            self._ring_overruns += 1
            start = end - size
            self._in_origin, self._out_origin = start, self._out_total
            self._gap = True
            if self._resampler is not None and not isinstance(self._resampler, _Flushed):
                self._resampler = soxr.ResampleStream(
                    ring.rate, SAMPLE_RATE, 1, dtype="float32", quality=self.config.resample_quality
                )
        raw = ring.data[np.arange(start, end) % size]
        self._read_pos = end
        horizon = end - 4 * ring.rate  # keep 4 s of block records for time lookups
        while len(self._records) > 2 and self._records[1][0] < horizon:
            self._records.popleft()
        if self._resampler is None:
            out = raw
        elif finished:
            # A finished finite source: flush what soxr still holds, once.
            out = np.asarray(self._resampler.resample_chunk(raw, last=True), np.float32)
            self._resampler = _Flushed()
        else:
            out = np.asarray(self._resampler.resample_chunk(raw), np.float32)
        self._out_total += out.shape[0]
        return out

    def _time_of_output(self, out_index: int) -> float:
        """Capture time of 16 kHz output sample `out_index` of the current stream (soxr's
        output is delay-compensated: output j is input j * rate / 16000)."""
        ring = self._reading
        if ring is None or out_index < 0 or not self._records:
            return math.nan
        i = self._in_origin + (out_index - self._out_origin) * ring.rate / SAMPLE_RATE
        ends = [end for end, _ in self._records]
        k = min(bisect.bisect_left(ends, i + 1), len(ends) - 1)  # the block holding input i
        end, when = self._records[k]
        return when - (end - 1 - i) / ring.rate

    # -- the callback (PortAudio thread) -----------------------------------------------------

    def _make_callback(self, ring: _Ring) -> Callable[..., None]:
        clock, switch, tap = self._clock, self._switch, self._tap
        data, size = ring.data, ring.data.shape[0]
        ends, times, n_rec = ring.block_end, ring.block_time, ring.block_end.shape[0]

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            now = clock()
            block = indata[:frames, 0]
            if switch is not None:
                block = switch.apply(block)
            w = ring.written % size
            first = min(frames, size - w)
            data[w : w + first] = block[:first]
            if first < frames:
                data[: frames - first] = block[first:frames]
            b = ring.blocks % n_rec
            ends[b] = ring.written + frames
            times[b] = now
            ring.blocks += 1
            ring.written += frames
            ring.callbacks += 1
            ring.last_callback = now
            if status and getattr(status, "input_overflow", False):
                ring.overflows += 1
            if tap is not None:
                try:
                    tap(block, ring.rate, now)
                except Exception:  # the microphone must keep going whatever a tap does
                    logger.exception("audio tap failed")

        return callback

    @staticmethod
    def _make_finished(ring: _Ring) -> Callable[[], None]:
        def finished() -> None:
            ring.finished = True

        return finished

    # -- watchdog thread ---------------------------------------------------------------------

    def _watch(self) -> None:
        while not wait_on(self._stop, self.config.watchdog_period_s, self._clock):
            with self._lock:
                self._check_locked()
            self._deliver()

    def _check_locked(self) -> None:
        now = self._clock()
        state, ring = self._state, self._ring
        if state in (CaptureState.STARTING, CaptureState.RUNNING) and ring is not None:
            if ring.finished:
                if self.config.finite:
                    self._close_locked(keep_ring=True)
                    self._set_state_locked(CaptureState.ENDED, None)
                else:
                    self._lose_locked("the input stream stopped")
                return
            last = ring.last_callback if ring.callbacks else self._opened_at
            if now - last > self.config.stall_timeout_s:
                self._lose_locked(f"no audio for {now - last:.1f} s")
                return
            if state is CaptureState.STARTING and ring.callbacks:
                self._attempt = 0
                self._set_state_locked(CaptureState.RUNNING, None)
        elif state in (CaptureState.LOST, CaptureState.NO_DEVICE) and now >= self._retry_at:
            self._restarts += 1
            if self.config.refresh_devices:
                self._refresh_devices()
            self._open_locked()

    def _refresh_devices(self) -> None:
        """PortAudio lists devices once, when it starts: a microphone plugged back in (or
        plugged in late) only shows after a restart of the library. sounddevice has no public
        call for it; its private pair is used when present."""
        terminate = getattr(self._sd, "_terminate", None)
        initialize = getattr(self._sd, "_initialize", None)
        if terminate is None or initialize is None:
            return
        try:
            terminate()
            initialize()
        except Exception as exc:
            logger.warning("could not refresh the audio device list: %s", exc)

    def _lose_locked(self, why: str) -> None:
        logger.warning("audio input lost: %s; retrying", why)
        self._close_locked(keep_ring=True)
        self._schedule_retry_locked()
        self._set_state_locked(CaptureState.LOST, why)

    def _schedule_retry_locked(self) -> None:
        backoff = self.config.retry_backoff_s
        self._retry_at = self._clock() + backoff[min(self._attempt, len(backoff) - 1)]
        self._attempt += 1

    # -- opening and closing (under the lock) ------------------------------------------------

    def _choose_rate(self, device: Any) -> int:
        info = self._sd.query_devices(device, kind="input")
        self._device_name = str(info.get("name", device)) if isinstance(info, dict) else ""
        native = round(float(info["default_samplerate"]))
        errors = []
        for rate in dict.fromkeys((native, *FALLBACK_RATES)):
            try:
                self._sd.check_input_settings(
                    device=device, channels=1, dtype="float32", samplerate=rate
                )
            except Exception as exc:
                errors.append(f"{rate} Hz: {exc}")
                continue
            return rate
        raise RuntimeError("no usable sample rate: " + "; ".join(errors))

    def _open_locked(self) -> None:
        device = self.config.device
        try:
            rate = self._choose_rate(device)
        except Exception as exc:
            self._schedule_retry_locked()
            self._set_state_locked(CaptureState.NO_DEVICE, f"no audio input device: {exc}")
            return
        block = max(1, round(rate * self.config.block_seconds))
        ring = _Ring(rate, self.config.ring_seconds, block)
        try:
            stream = self._sd.InputStream(
                device=device,
                samplerate=rate,
                channels=1,
                dtype="float32",
                blocksize=block,
                callback=self._make_callback(ring),
                finished_callback=self._make_finished(ring),
            )
            stream.start()
        except Exception as exc:
            self._schedule_retry_locked()
            self._set_state_locked(CaptureState.NO_DEVICE, f"cannot open the audio input: {exc}")
            return
        if self._ring is not None:
            self._overflows_before += self._ring.overflows
            self._callbacks_before += self._ring.callbacks
        self._stream, self._ring = stream, ring
        self._native_rate = rate
        self._opened_at = self._clock()
        self._set_state_locked(CaptureState.STARTING, None)
        logger.info("audio input %r open at %d Hz", self._device_name, rate)

    def _close_locked(self, *, keep_ring: bool = False) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stop_and_close(stream, what="the audio stream")
        if not keep_ring and self._ring is not None:
            self._overflows_before += self._ring.overflows
            self._callbacks_before += self._ring.callbacks
            self._ring = None

    def _status_locked(self) -> CaptureStatus:
        ring = self._ring
        return CaptureStatus(
            state=self._state,
            device=self._device_name,
            native_rate=self._native_rate,
            callbacks=self._callbacks_before + (ring.callbacks if ring else 0),
            overflows=self._overflows_before + (ring.overflows if ring else 0),
            ring_overruns=self._ring_overruns,
            restarts=self._restarts,
            error=self._error,
        )

    def _set_state_locked(self, state: CaptureState, error: str | None) -> None:
        changed = state is not self._state or error != self._error
        self._state, self._error = state, error
        if changed and self._on_status is not None:
            self._outbox.append(self._status_locked())

    def _deliver(self) -> None:
        """Report state changes outside the lock, so a listener may call back in (stop...)."""
        while self._outbox and self._on_status is not None:
            try:
                status = self._outbox.popleft()
            except IndexError:
                return
            try:
                self._on_status(status)
            except Exception:
                logger.exception("audio status listener failed")
