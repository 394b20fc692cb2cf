"""The live engine end to end with stub graphs, a fake microphone and a fake virtual camera.

The stub graphs keep the real I/O contract and simple math (tests/support/stub_graphs.py): a frame's
pixel level tells the motion it was rendered from, the motion tells the audio loudness and the
pose condition it was sampled with. So the tests check content, order and timing from what the
virtual camera received, independently of what the engine says about itself.
"""

from __future__ import annotations

import itertools
import math
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr

from runtime.engine.features import encoder_from_session, utterance_features
from runtime.engine.live.engine import (
    EngineConfig,
    FileInput,
    HeadPose,
    LiveControls,
    LiveEngine,
    MicrophoneInput,
)
from runtime.engine.motion_sampler import (
    RawConditions,
    conditioner_from_session,
    fixed_noise,
    sample_motion,
    velocity_from_session,
)
from runtime.model.contract import SAMPLES_PER_FRAME
from runtime.model.execution.sessions import ModelSet
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink
from tests.support import stub_graphs
from tests.support.fakes import virtual_camera as fakecam
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.live import Tap, assert_on_deadlines, grey_avatar, stub_models, wav_16k
from tests.support.virtual_clock import VirtualClock
from tests.support.waiting import eventually, wait_until

ENGINE_THREADS = ("live-worker", "pacer", "audio-watchdog", "fake-mic", "recorder", "webcam")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return stub_models(tmp_path_factory.mktemp("stubs"))


@pytest.fixture(autouse=True)
def _fake_camera_and_cleanup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register the fake camera; stop every engine a test started, even when it failed, then
    check that no engine thread outlived it."""
    fakecam.register()
    started: list[LiveEngine] = []
    real_start = LiveEngine.start

    def start(self: LiveEngine, *args: object, **kwargs: object) -> None:
        started.append(self)
        real_start(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LiveEngine, "start", start)
    yield
    for engine in started:
        engine.stop()

    def no_engine_thread() -> bool:
        return all(t.name not in ENGINE_THREADS for t in threading.enumerate())

    # A stopped thread may take a moment to leave `threading.enumerate()`; a leaked one never.
    wait_until(no_engine_thread, 2.0, what="every engine thread ended")


def vcam(width: int = 640, height: int = 360, backend: str = "fake") -> VirtualCameraSink:
    return VirtualCameraSink(VirtualCameraConfig(width=width, height=height, backend=backend))


def red_level(image: np.ndarray) -> float:
    """Column-0 red level in [0, 1] (the ramp is 0 there)."""
    return float(image[0, 0, 0]) / 255.0


def speech_48k(fixtures_dir: Path) -> np.ndarray:
    return soxr.resample(wav_16k(fixtures_dir / "audio_1.wav"), 16000, 48000).astype(np.float32)


def first_publications(tap: Tap) -> list[tuple[int, float, object]]:
    """(publish order, time, frame) of each frame's first publication."""
    seen: set[int] = set()
    out = []
    for n, (t, f) in enumerate(tap.frames):
        if f.index >= 0 and f.index not in seen:
            seen.add(f.index)
            out.append((n, t, f))
    return out


@pytest.fixture
def vclock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """A virtual clock for the test thread, also stamping the fake camera's frames."""
    clock = VirtualClock(real_timeout_s=180.0)
    monkeypatch.setattr(fakecam.RecordingBackend, "clock", staticmethod(clock))
    clock.join()
    return clock


def start_on(clock: VirtualClock, engine: LiveEngine, *args: object) -> None:
    with clock.adopting():
        engine.start(*args)  # type: ignore[arg-type]


def test_frame_rate_order_and_memory_over_20s(
    models: ModelSet, fixtures_dir: Path, vclock: VirtualClock
) -> None:
    """20 s of looped speech from a 48 kHz microphone: 25 fps on the dot, in order, every frame
    shown once after the first second, flat RSS (in virtual time: the answer does not depend on
    the machine's load)."""
    dev = FakeSoundDevice(speech_48k(fixtures_dir), 48000, loop=True, clock=vclock)
    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        sinks=[vcam(), tap.preview()],
        listener=tap.listener(),
        clock=vclock,
    )
    start_on(vclock, engine, grey_avatar(models, 100))
    t0 = vclock()
    vclock.sleep(5.0)
    rss_5s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    vclock.sleep(15.0)
    rss_20s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = engine.stats()
    end = vclock()
    vclock.leave()
    assert engine.stop()
    cam = fakecam.RecordingBackend.instances[-1]
    n = sum(1 for t in cam.times if t <= end)  # (stopping lets the pacer tick on alone)
    times = np.array(cam.times[:n])
    assert times[-1] - times[0] > 19.0
    assert_on_deadlines(times, 0.04, stats.latency.counters.get("tick_moves", 0))
    assert stats.latency.counters.get("tick_moves", 0) <= 3  # the start, a delay change
    assert abs(stats.latency.output_fps - 25.0) < 1e-6
    # In order: every sink got the same frames in the same order, indices never go back.
    shown = [(t, f) for t, f in tap.frames if t <= end]
    after_1s = [f.index for t, f in shown if t - t0 >= 1.0]
    assert after_1s == list(range(after_1s[0], after_1s[0] + len(after_1s)))
    tap.frames[:] = shown
    cam.probes[:] = cam.probes[:n]
    cam.times[:] = cam.times[:n]
    indices = [f.index for _, f in tap.frames]
    assert all(b >= a for a, b in itertools.pairwise(indices))
    assert len(tap.frames) == len(cam.times)
    cam_red = [p[0, 0, 0] for p in cam.probes]
    # The face sits at x 140..500 of the 640x360 camera frame (probe column 18 = x 144).
    cam_face_red = [p[0, 18, 0] for p in cam.probes]
    assert cam_red[0] == 0  # background
    preview_red = [int(f.image[0, 0, 0]) for _, f in tap.frames]
    assert np.abs(np.array(cam_face_red, int) - np.array(preview_red, int)).max() <= 3
    # Nearly every 25 fps frame of the audio was shown once (only the start and playout-delay
    # adjustments drop a few).
    unique = sorted(set(indices) - {-1})
    assert len(unique) > 0.97 * (unique[-1] - unique[0] + 1)
    assert stats.latency.counters.get("late", 0) <= 3
    assert stats.skipped_hops == 0 and stats.hop == 1  # Auto on stub graphs
    assert stats.audio is not None and stats.audio.native_rate == 48000
    assert stats.audio.overflows == 0
    assert rss_20s - rss_5s < 30_000  # KiB: nothing grows with time


def test_measured_latency_equals_reported(models: ModelSet, vclock: VirtualClock) -> None:
    """Silence, then a noise burst starting exactly at 16 kHz frame 60 (2.4 s): the first bright
    frame is frame 60, and the latency the virtual camera sees (arrival minus when the fake
    microphone heard each frame's last sample) is what the engine reports. In virtual time:
    the engine's own bookkeeping is checked exactly, not the machine's scheduling."""
    rate, onset_frame = 48000, 60
    onset = onset_frame * SAMPLES_PER_FRAME * 3
    audio = np.zeros(rate * 6, np.float32)
    audio[onset : onset + rate * 2] = np.random.default_rng(1).uniform(-0.3, 0.3, rate * 2)
    dev = FakeSoundDevice(audio, rate, clock=vclock)
    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        sinks=[vcam(), tap.preview()],
        clock=vclock,
    )
    start_on(vclock, engine, grey_avatar(models, 100), LiveControls(hop=5))
    vclock.sleep(4.5)
    vclock.leave()
    stats = engine.stop() and engine.stats()
    assert stats
    assert dev.deliveries[0].first_sample == 0
    cam = fakecam.RecordingBackend.instances[-1]
    assert len(cam.times) == len(tap.frames)
    firsts = first_publications(tap)
    bright = [f.index for _, _, f in firsts if red_level(f.image) > 0.45]
    assert bright and bright[0] == onset_frame
    measured, reported = [], []
    for n, _, f in firsts:
        last = 3 * ((f.index + 1) * SAMPLES_PER_FRAME - 1)  # device sample depicted last
        if f.index < 10:
            continue
        # From when the microphone heard that sample to when the camera got the frame.
        measured.append(cam.times[n] - dev.heard_at(last))
        reported.append(f.timing.sent - f.timing.capture)
    measured_a, reported_a = np.array(measured), np.array(reported)
    assert len(measured_a) > 50
    # The engine's capture clock (block arrival times, resampler delay compensated) and its
    # `sent` stamp are the device's and the camera's own times.
    diff = measured_a - reported_a
    assert np.abs(diff).max() < 0.001, diff
    assert abs(np.median(measured_a) * 1e3 - stats.latency.latency_p50_ms) < 1
    # The budget: hop + lookahead (280 ms) + half a frame of margin (the ticks are moved onto
    # the frames, so no rounding to a whole frame adds to it); compute takes no time here.
    assert np.median(measured_a) == pytest.approx(0.30, abs=0.004)


def test_pose_change_reaches_the_generator_within_one_hop(
    models: ModelSet, vclock: VirtualClock
) -> None:
    dev = FakeSoundDevice(np.zeros(16000, np.float32), 16000, loop=True, clock=vclock)
    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        sinks=[tap.preview()],
        listener=tap.listener(),
        clock=vclock,
    )
    start_on(vclock, engine, grey_avatar(models, 100), LiveControls(hop=5))
    vclock.sleep(1.5)
    pose = HeadPose(pitch=40.0, yaw=-10.0, roll=5.0)
    changed_at = vclock()
    engine.set_controls(LiveControls(pose=pose, hop=5))
    vclock.sleep(1.5)
    vclock.leave()
    assert engine.stop()
    before = [h for h in tap.hops if h.started < changed_at]
    after = [h for h in tap.hops if h.started >= changed_at]
    assert all(h.raw.pose is None for h in before)
    assert after and all(h.raw.pose is not None for h in after)
    assert np.allclose(after[0].raw.pose[0], np.radians([40.0, -10.0, 5.0]))
    hop_s = 5 / 25
    assert after[0].started - changed_at <= hop_s + 0.01  # the next hop (virtual time)
    # And it shows: pitch drives motion channel 2 -> the blue level of the frames.
    blue_before = [f.image[0, 0, 2] for t, f in tap.frames if t < changed_at]
    blue_after = [f.image[0, 0, 2] for t, f in tap.frames if t > changed_at + 1.0]
    assert min(blue_after) > max(blue_before) + 20


def test_device_loss_and_recovery(models: ModelSet, vclock: VirtualClock) -> None:
    audio = np.random.default_rng(2).uniform(-0.2, 0.2, 16000).astype(np.float32)
    dev = FakeSoundDevice(audio, 16000, loop=True, clock=vclock)
    tap = Tap(clock=vclock)
    cfg = EngineConfig()
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        config=cfg,
        sinks=[vcam(), tap.preview()],
        listener=tap.listener(),
        clock=vclock,
    )
    start_on(vclock, engine, grey_avatar(models, 100))
    vclock.sleep(1.5)
    t_unplug = vclock()
    dev.unplug()
    t_lost = tap.wait_event("audio", "lost", timeout=4.0)
    assert t_lost is not None and t_lost - t_unplug < 3.0
    vclock.sleep(2.0)
    lost_stats = engine.stats()
    assert lost_stats.audio is not None and lost_stats.audio.state.value in ("lost", "no_device")
    t_replug = vclock()
    dev.replug()
    t_back = tap.wait_event("audio", "running", timeout=0)  # the first "running" is the start
    assert t_back is not None and t_back < t_unplug
    deadline = vclock() + 10
    while vclock() < deadline:
        running = [e for e in tap.events if e.kind == "audio" and e.message == "running"]
        if len(running) >= 2:
            break
        vclock.sleep(0.05)
    assert len(running) >= 2 and running[-1].when - t_replug < 9.0
    vclock.sleep(1.0)
    vclock.leave()
    assert engine.stop()
    cam = fakecam.RecordingBackend.instances[-1]
    times = np.array(cam.times)
    # The frame clock held through the loss.
    during = times[(times > t_unplug) & (times < t_replug)]
    assert abs(len(during) / (t_replug - t_unplug) - 25) < 1.5
    # Idle motion while lost (silence), real audio again after recovery.
    quiet = [h for h in tap.hops if t_lost + 0.5 < h.started < t_replug]
    loud = [h for h in tap.hops if h.started > running[-1].when + 0.5]
    # (the window may still hold some speech from before the loss: the silent frames then
    # come out of the normalisation a little above zero)
    assert quiet and all(float(h.features[: h.emitted].max()) < 0.05 for h in quiet)
    assert loud and all(float(h.features.mean()) > 0.5 for h in loud)


def test_no_input_device_keeps_publishing_idle(models: ModelSet, vclock: VirtualClock) -> None:
    dev = FakeSoundDevice(np.zeros(100, np.float32), 16000, clock=vclock)
    dev.remove_device()
    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        sinks=[vcam(), tap.preview()],
        listener=tap.listener(),
        clock=vclock,
    )
    start_on(vclock, engine, grey_avatar(models, 100))
    vclock.sleep(2.0)
    stats = engine.stats()
    vclock.leave()
    assert engine.stop()
    assert any("no audio input device" in m for m in tap.kinds("audio"))
    assert stats.audio is not None and stats.audio.state.value == "no_device"
    cam = fakecam.RecordingBackend.instances[-1]
    assert 45 <= len(cam.times) <= 52
    assert tap.hops  # silence keeps the avatar moving


def test_sink_failure_and_missing_camera_do_not_stop_the_engine(
    models: ModelSet, vclock: VirtualClock
) -> None:
    fakecam.FailingBackend.fail_after = 10
    dev = FakeSoundDevice(np.zeros(16000, np.float32), 16000, loop=True, clock=vclock)
    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        sinks=[vcam(backend="fake-failing"), vcam(backend="fake-busy"), tap.preview()],
        listener=tap.listener(),
        clock=vclock,
    )
    start_on(vclock, engine, grey_avatar(models, 100))
    vclock.sleep(2.0)
    stats = engine.stats()
    vclock.leave()
    assert engine.stop()
    failing, busy, preview = stats.sinks
    assert failing.open and failing.frames == 10 and failing.errors > 30
    assert not busy.open and "in use by another application" in (busy.unavailable or "")
    assert preview.errors == 0 and preview.frames > 45
    assert any("fake camera went away" in m for m in tap.kinds("sink"))
    assert abs(stats.latency.output_fps - 25) < 1


def test_stop_is_fast_and_start_stop_start_works(models: ModelSet) -> None:
    dev = FakeSoundDevice(np.zeros(16000, np.float32), 16000, loop=True)
    tap = Tap()
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        sinks=[vcam(), tap.preview()],
        listener=tap.listener(),
    )
    avatar = grey_avatar(models, 100)
    for run in range(3):
        engine.start(avatar)
        # Each run publishes: wait (bounded) for frames rather than trusting a loaded machine.
        cams = fakecam.RecordingBackend.instances
        wait_until(lambda: len(cams) == run + 1 and len(cams[-1].times) > 10, 10.0)  # noqa: B023
        t = time.perf_counter()
        assert engine.stop()
        assert time.perf_counter() - t < 1.0
        for thread in threading.enumerate():
            assert thread.name not in ENGINE_THREADS
        assert not engine.running
    assert len(fakecam.RecordingBackend.instances) == 3
    assert all(len(c.times) > 10 for c in fakecam.RecordingBackend.instances)
    assert tap.kinds("started") == ["live at 25 fps"] * 3


def test_stop_interrupts_a_slow_hop(models: ModelSet) -> None:
    """A hop that takes seconds (a big model on a slow CPU) does not hold up stop()."""

    class SlowVelocity:
        """A hop that ends only after 10 s, or when ONNX Runtime's terminate flag is set."""

        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.entered = threading.Event()
            self.terminated = False

        def run(self, inputs: object, *, run_options: object = None) -> object:
            self.entered.set()
            if eventually(lambda: getattr(run_options, "terminate", False), 10.0):
                self.terminated = True
                raise RuntimeError("Exiting due to terminate flag being set to true.")
            return self.inner.run(inputs, run_options=run_options)  # type: ignore[attr-defined]

    velocity = SlowVelocity(models["velocity"])
    slow = ModelSet(sessions={**models.sessions, "velocity": velocity})
    dev = FakeSoundDevice(np.zeros(16000, np.float32), 16000, loop=True)
    engine = LiveEngine(models=slow, source=MicrophoneInput(sd=dev))  # type: ignore[arg-type]
    engine.start(grey_avatar(models, 100))
    wait_until(velocity.entered.is_set, 10.0, what="the first hop inside the slow velocity")
    t = time.perf_counter()
    assert engine.stop()
    assert time.perf_counter() - t < 1.0
    assert velocity.terminated  # the hop was cut short, not waited for


def test_quality_mode_equals_the_offline_sampler(tmp_path: Path, golden_dir: Path) -> None:
    """Hop 50 over a file with whole-file features: the engine's motion is the offline
    sampler's, to float rounding (stub velocity keeps a trace of the noise)."""
    models = stub_models(tmp_path, velocity_gain=0.9)
    golden = np.load(golden_dir / "generator_golden.npz")
    audio = golden["audio_16k"]
    tap = Tap()
    engine = LiveEngine(
        models=models,
        source=FileInput(audio=audio),
        config=EngineConfig(quality=True, seed=25),
        sinks=[tap.preview()],
        listener=tap.listener(),
    )
    avatar = grey_avatar(models, 100)
    engine.start(avatar, LiveControls(cfg_scale=3.0, nfe=10))
    assert engine.wait_audio_ended(timeout=8)
    assert engine.stop()
    hops = [h for h in tap.hops if h.first_frame < 75]
    assert [(h.first_frame, h.emitted) for h in hops] == [(0, 50), (50, 25)]
    live = np.concatenate([h.motion for h in hops])
    features = utterance_features(encoder_from_session(models["audio_encoder"]), audio)
    offline = sample_motion(
        velocity_from_session(models["velocity"]),
        conditioner_from_session(models["conditioner"]),
        audio_features=features,
        ref_motion=avatar.source_motion,
        raw_conditions=RawConditions(),
        cfg_scale=3.0,
        nfe=10,
        noise=fixed_noise(25),
    )
    assert offline.shape == (75, 32)
    np.testing.assert_allclose(live, offline, rtol=0, atol=1e-5)
    # The noise matters with this stub: another seed gives other motion.
    other = sample_motion(
        velocity_from_session(models["velocity"]),
        conditioner_from_session(models["conditioner"]),
        audio_features=features,
        ref_motion=avatar.source_motion,
        raw_conditions=RawConditions(),
        cfg_scale=3.0,
        nfe=10,
        noise=fixed_noise(26),
    )
    assert np.abs(other - offline).max() > 1e-3


def test_file_input_plays_in_real_time_then_idles(
    models: ModelSet, fixtures_dir: Path, vclock: VirtualClock
) -> None:
    """In virtual time: the file takes its own length on the engine's clock."""
    audio = wav_16k(fixtures_dir / "audio_1.wav")[: 16000 * 2 + 123]
    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=FileInput(audio=audio, name="audio_1.wav"),
        sinks=[tap.preview()],
        listener=tap.listener(),
        clock=vclock,
    )
    t0 = vclock()
    start_on(vclock, engine, grey_avatar(models, 100))
    while not engine.wait_audio_ended(timeout=0) and vclock() - t0 < 5:
        vclock.sleep(0.01)
    assert engine.wait_audio_ended(timeout=0)
    elapsed = vclock() - t0
    vclock.sleep(0.8)
    vclock.leave()
    assert engine.stop()
    assert 2.0 < elapsed < 2.6
    frames = math.ceil(audio.size / SAMPLES_PER_FRAME)  # 51: the last one padded
    file_hops = [h for h in tap.hops if h.first_frame < frames]
    covered = sorted(k for h in file_hops for k in range(h.first_frame, h.first_frame + h.emitted))
    assert covered == list(range(frames))
    assert [h for h in tap.hops if h.first_frame >= frames]  # idling on after the end
    assert tap.kinds("audio_ended")


def test_stub_level_decoding_matches_the_stub_math() -> None:
    """The helpers the tests use to read pixels back agree with the graph."""
    for m in (-1.0, 0.5, 2.0, 4.0):
        lvl = stub_graphs.frame_level(m, 0.4)
        assert abs(stub_graphs.motion_from_level(lvl, 0.4) - m) < 1e-9


def test_recording_keeps_lips_in_sync_with_the_microphone(
    models: ModelSet, tmp_path: Path, vclock: VirtualClock
) -> None:
    """A burst starting at 16 kHz frame 50 (2.0 s): in the recorded MP4 the first bright frame
    and the start of the sound coincide, although the frames were published ~0.3 s after the
    sound was captured. An audio sink that raises does not stop anything."""
    import av

    from runtime.sinks.recorder import RecorderConfig, RecorderSink

    class BrokenMeter:
        name = "meter"

        def open(self, *, fps: float) -> None:
            pass

        def send(self, frame: object, repeat: bool) -> None:
            pass

        def add_audio(self, first_sample: int, samples: np.ndarray) -> None:
            raise ValueError("meter broke")

        def close(self, timeout: float = 1.0) -> None:
            pass

    rate = 16000
    audio = np.zeros(rate * 5, np.float32)
    burst = np.arange(rate * 2) / rate
    audio[50 * SAMPLES_PER_FRAME : 50 * SAMPLES_PER_FRAME + burst.size] = 0.4 * np.sin(
        2 * np.pi * 300 * burst
    )
    dev = FakeSoundDevice(audio, rate, clock=vclock)
    out = tmp_path / "live.mp4"
    tap = Tap(clock=vclock)
    recorder = RecorderSink(RecorderConfig(path=out))
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        sinks=[recorder, BrokenMeter(), tap.preview()],
        listener=tap.listener(),
        clock=vclock,
    )
    # The recorder's thread only blocks on its queue: it must not hold virtual time.
    with vclock.adopting(except_names=("recorder",)):
        engine.start(grey_avatar(models, 100))
    vclock.sleep(3.5)
    vclock.leave()
    assert engine.stop()
    assert recorder.wait_finished(60.0)  # in virtual time the file may still be being written
    assert any("meter broke" in m for m in tap.kinds("sink"))
    assert engine.stats().latency.frames_published > 80
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        frames = [(float(f.pts * v.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)])
        assert a.rate == rate
    bright = next(t for t, img in frames if img[:, :8, 0].mean() > 0.45 * 255)
    onset = np.argmax(np.abs(sound) > 0.2) / rate
    assert abs(bright - onset) <= 0.045, (bright, onset)  # within a frame (AAC priming aside)
