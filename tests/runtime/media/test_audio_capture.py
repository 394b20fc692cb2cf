"""Microphone capture: native rate, 16 kHz out with the right capture times, overflows counted,
unplug detected and recovered, no device reported; file playback ends cleanly."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from runtime.media.audio_capture import AudioCapture, CaptureConfig, CaptureState, CaptureStatus
from runtime.media.audio_playback import FilePlayback
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.virtual_clock import VirtualClock


def speech_16k(fixtures_dir: Path, name: str = "audio_1.wav") -> np.ndarray:
    with wave.open(str(fixtures_dir / name)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return pcm.astype(np.float32) / 32768.0


def collect(
    cap: AudioCapture, seconds: float, clock: VirtualClock
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Read for `seconds` of `clock`; returns the samples and (end index, end time) per read."""
    chunks, marks, total = [], [], 0
    end = clock() + seconds
    while clock() < end:
        got = cap.read()
        if got.samples.size:
            chunks.append(got.samples)
            total += got.samples.size
            marks.append((total, got.end_time))
        clock.sleep(0.02)
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), marks


def start_on(clock: VirtualClock, cap: AudioCapture) -> None:
    """Start `cap` with the test thread and every capture thread on the virtual clock."""
    clock.join()
    with clock.adopting():
        cap.start()


@pytest.mark.parametrize("native", [48000, 44100])
def test_native_rate_resampled_with_capture_times(fixtures_dir: Path, native: int) -> None:
    speech = speech_16k(fixtures_dir)
    played = soxr.resample(speech, 16000, native).astype(np.float32)
    clock = VirtualClock(real_timeout_s=60.0)
    dev = FakeSoundDevice(played, native, clock=clock)
    cap = AudioCapture(sd=dev, config=CaptureConfig(), clock=clock)
    start_on(clock, cap)
    try:
        got, marks = collect(cap, 1.5, clock)
        status = cap.status()
    finally:
        clock.leave()
        assert cap.stop()
    assert status.state is CaptureState.RUNNING and status.native_rate == native
    assert all(s.rate == native for s in dev.streams)
    first = dev.deliveries[0].first_sample * 16000 // native
    # The 16 kHz stream is the recording itself (aligned sample for sample).
    n = min(got.size, 16000)
    ref = speech[first : first + n]
    corr = np.corrcoef(got[1000:n], ref[1000:n])[0, 1]
    assert corr > 0.99
    # The capture time of the last sample of each read is when the fake handed its block over
    # (less the samples after it in that block).
    for end, when in marks[3:]:
        i = (first + end - 1) * native / 16000  # position in the played recording
        d = next(d for d in dev.deliveries if d.first_sample + d.frames > i)
        handed = d.when - (d.first_sample + d.frames - 1 - i) / native
        assert abs(when - handed) < 0.001, (when, handed)
        assert abs(when - dev.heard_at(round(i))) < 0.03  # and the fake kept real time


def test_unsupported_default_rate_falls_back(fixtures_dir: Path) -> None:
    clock = VirtualClock(real_timeout_s=60.0)
    dev = FakeSoundDevice(np.zeros(48000, np.float32), 48000, default_rate=96000, clock=clock)
    cap = AudioCapture(sd=dev, config=CaptureConfig(), clock=clock)
    start_on(clock, cap)
    clock.sleep(0.2)
    status = cap.status()
    clock.leave()
    cap.stop()
    assert status.native_rate == 48000 and status.state is CaptureState.RUNNING


def test_overflows_are_counted() -> None:
    clock = VirtualClock(real_timeout_s=60.0)
    dev = FakeSoundDevice(np.zeros(16000, np.float32), 16000, loop=True, clock=clock)
    cap = AudioCapture(sd=dev, config=CaptureConfig(), clock=clock)
    start_on(clock, cap)
    clock.sleep(0.1)
    dev.inject_overflow()
    clock.sleep(0.1)
    dev.inject_overflow()
    clock.sleep(0.1)
    overflows = cap.status().overflows
    clock.leave()
    cap.stop()
    assert overflows == 2


def test_unplug_detected_then_recovered() -> None:
    """In virtual time: the detection and retry times are the watchdog's, not the machine's."""
    clock = VirtualClock(real_timeout_s=60.0)
    dev = FakeSoundDevice(np.full(16000, 0.1, np.float32), 16000, loop=True, clock=clock)
    seen: list[tuple[float, CaptureStatus]] = []
    cfg = CaptureConfig(stall_timeout_s=2.0, retry_backoff_s=(0.3, 0.6))
    cap = AudioCapture(
        sd=dev, config=cfg, on_status=lambda s: seen.append((clock(), s)), clock=clock
    )
    clock.join()
    # Adopting for the whole run: the watchdog starts new stream threads on every retry.
    with clock.adopting():
        cap.start()
        try:
            clock.sleep(0.3)
            cap.read()
            assert cap.state is CaptureState.RUNNING
            t_unplug = clock()
            dev.unplug()
            while cap.state is CaptureState.RUNNING and clock() - t_unplug < 5:
                cap.read()
                clock.sleep(0.02)
            detected = clock() - t_unplug
            assert cap.state in (CaptureState.LOST, CaptureState.NO_DEVICE)
            assert 1.9 < detected < 2.6  # the 2 s stall timeout and one watchdog period
            clock.sleep(1.0)  # retries fail while unplugged
            assert cap.state in (CaptureState.LOST, CaptureState.NO_DEVICE)
            assert cap.status().error
            dev.replug()
            t_replug = clock()
            while cap.state is not CaptureState.RUNNING and clock() - t_replug < 5:
                clock.sleep(0.02)
            assert cap.state is CaptureState.RUNNING
            assert clock() - t_replug < 0.8  # within one backoff step (0.6 s)
            got = cap.read()
            while got.samples.size == 0:
                clock.sleep(0.02)
                got = cap.read()
            assert got.restarted
            assert cap.status().restarts >= 1
        finally:
            clock.leave()
            assert cap.stop()
    states = [s.state for _, s in seen]
    assert CaptureState.LOST in states
    assert states[-1] is CaptureState.STOPPED
    assert states.index(CaptureState.LOST) < len(states) - 1 - states[::-1].index(
        CaptureState.RUNNING
    )


def test_no_input_device_is_reported() -> None:
    dev = FakeSoundDevice(np.zeros(100, np.float32), 16000)
    dev.remove_device()
    cap = AudioCapture(sd=dev, config=CaptureConfig())
    cap.start()
    status = cap.status()
    assert status.state is CaptureState.NO_DEVICE
    assert status.error and "no audio input device" in status.error
    assert cap.read().samples.size == 0
    t = time.perf_counter()
    assert cap.stop()
    assert time.perf_counter() - t < 1.0


def test_file_playback_plays_everything_then_ends(fixtures_dir: Path) -> None:
    """In virtual time: one second of audio takes one second of the playback's clock."""
    speech = speech_16k(fixtures_dir)[:16000]
    for rate, audio in ((16000, speech), (44100, soxr.resample(speech, 16000, 44100))):
        clock = VirtualClock(real_timeout_s=60.0)
        source = FilePlayback(audio.astype(np.float32), rate, clock=clock)
        cap = AudioCapture(sd=source, config=CaptureConfig(finite=True), clock=clock)
        clock.join()
        with clock.adopting():
            t = clock()
            cap.start()
            chunks = []
            try:
                while cap.state is not CaptureState.ENDED and clock() - t < 3:
                    chunks.append(cap.read().samples)
                    clock.sleep(0.02)
                chunks.append(cap.read().samples)
                elapsed = clock() - t
            finally:
                clock.leave()
                cap.stop()
        got = np.concatenate(chunks)
        assert cap.status().state is CaptureState.STOPPED
        assert 0.98 < elapsed < 1.2  # real time on the playback's clock
        assert abs(got.size - 16000) <= 2
        assert np.corrcoef(got[:15000], speech[:15000])[0, 1] > 0.99


def test_device_list_refreshed_before_retries_when_asked() -> None:
    """A microphone that appears only after the start is found once PortAudio re-lists."""
    clock = VirtualClock(real_timeout_s=60.0)
    dev = FakeSoundDevice(np.zeros(16000, np.float32), 16000, loop=True, clock=clock)
    dev.remove_device()
    cfg = CaptureConfig(retry_backoff_s=(0.2,), refresh_devices=True)
    cap = AudioCapture(sd=dev, config=cfg, clock=clock)
    start_on(clock, cap)
    try:
        clock.sleep(0.5)
        assert cap.state is CaptureState.NO_DEVICE
        assert dev.terminated >= 1 and dev.initialized == dev.terminated
        dev.present = dev.plugged = True
        clock.sleep(0.5)
        assert cap.state is CaptureState.RUNNING
    finally:
        clock.leave()
        cap.stop()
    clock = VirtualClock(real_timeout_s=60.0)
    quiet = FakeSoundDevice(np.zeros(16000, np.float32), 16000, clock=clock)
    quiet.remove_device()
    cap = AudioCapture(sd=quiet, config=CaptureConfig(retry_backoff_s=(0.1,)), clock=clock)
    start_on(clock, cap)
    clock.sleep(0.4)
    clock.leave()
    cap.stop()
    assert cap.status().restarts >= 2  # it did retry
    assert quiet.terminated == 0  # not by default: a GUI may be using PortAudio


@pytest.mark.parametrize("rate", [16000, 48000])
def test_a_reader_busy_longer_than_the_ring_keeps_true_capture_times(rate: int) -> None:
    """The worker was busy for 5 s with a 2 s ring (a slow hop on a slow CPU): what it reads
    next is marked as a new stream and its capture times are still the real ones. Before, the
    lost span shifted every later capture time, more at every overrun: the latency on a CPU
    that is not real time grew without bound. In virtual time (support/virtual_clock.py)."""
    clock = VirtualClock(real_timeout_s=60.0)
    audio = np.random.default_rng(3).uniform(-0.2, 0.2, rate * 30).astype(np.float32)
    playback = FilePlayback(audio, rate, clock=clock)
    cap = AudioCapture(
        sd=playback, config=CaptureConfig(ring_seconds=2.0, finite=True), clock=clock
    )
    # (Within 60 ms: a block, and the resampler's own delay at 48 kHz; the lost span is 3 s.)
    clock.join()
    with clock.adopting():
        cap.start()
    try:
        for _ in range(3):
            clock.sleep(0.3)
            got = cap.read()
            assert got.samples.size and abs(got.end_time - clock()) < 0.06
        for _ in range(3):
            clock.sleep(5.0)  # busy: 3 s more than the ring holds
            got = cap.read()
            assert got.restarted  # the timeline starts a new clock segment
            assert abs(got.end_time - clock()) < 0.06, got.end_time - clock()
            assert cap.status().ring_overruns >= 1
            clock.sleep(0.1)
            got = cap.read()
            assert not got.restarted and abs(got.end_time - clock()) < 0.06
    finally:
        clock.leave()
        assert cap.stop()
