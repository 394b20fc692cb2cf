"""Video-driven live mode: fake webcam -> face crop -> motion encoder -> renderer -> pacer.

Everything runs in virtual time (support/virtual_clock.py): the fake camera, the webcam reader,
the worker and the pacer wait on the clock, so rates, latencies and retry timings are the same
on an idle machine and on a busy one; real time only bounds a test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.engine.live.engine import EngineStats, LiveEngine, WebcamInput
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.pacer import Pacer, PacerConfig
from runtime.engine.live.webcam import NewestGrabs
from runtime.media.webcam import WebcamConfig, WebcamSource, WebcamState
from runtime.model.execution.sessions import ModelSet
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink
from tests.support import stub_graphs
from tests.support.fakes import virtual_camera as fakecam
from tests.support.fakes.camera import FakeCv2
from tests.support.live import Tap, grey_avatar, stub_models
from tests.support.virtual_clock import VirtualClock
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return stub_models(tmp_path_factory.mktemp("stubs"))


class CentreCrop:
    """Stands in for the face tracker (the real one is tested in test_face_crop.py)."""

    def update(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        return np.ascontiguousarray(rgb[y : y + s : s // 256, x : x + s : s // 256][:256, :256])


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    fakecam.register()
    yield

    def none_left() -> bool:
        return not {t.name for t in threading.enumerate()} & {"live-worker", "pacer", "webcam"}

    # A stopped thread may take a moment to leave `threading.enumerate()`; a leaked one never.
    wait_until(none_left, 2.0, what="no engine thread left")


@pytest.fixture
def vclock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """A virtual clock the test thread takes part in, also stamping the fake camera's frames."""
    clock = VirtualClock(real_timeout_s=120.0)
    monkeypatch.setattr(fakecam.RecordingBackend, "clock", staticmethod(clock))
    clock.join()
    return clock


def run_engine(
    clock: VirtualClock, engine: LiveEngine, avatar: object, seconds: float
) -> tuple[float, EngineStats]:
    """Run `engine` for `seconds` of virtual time; returns when it was stopped and its stats
    then. Every thread started meanwhile (the webcam reader starts inside the worker) takes
    part in the clock."""
    with clock.adopting():
        engine.start(avatar)  # type: ignore[arg-type]
        clock.sleep(seconds)
    end, stats = clock(), engine.stats()
    clock.leave()  # (stopping joins the threads: the test thread must not hold the clock)
    assert engine.stop()
    return end, stats


def captured_level(cv: FakeCv2, capture: float) -> int:
    """The pattern level of the camera frame read at `capture` (the reader stamps a frame when
    `read()` returns; in virtual time that is the instant the fake logged)."""
    when, n = min(cv.frames_read, key=lambda r: abs(r[0] - capture))
    assert abs(when - capture) < 1e-9, (when, capture)
    return cv.pattern(n)


def test_webcam_drives_the_avatar(models: ModelSet, vclock: VirtualClock) -> None:
    """25 fps on the dot from a 30 fps camera; each published picture shows the camera frame it
    was made from; its index is its place on the output timeline."""
    cv = FakeCv2(fps=30, clock=vclock)
    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=WebcamInput(cv2=cv, cropper=CentreCrop),
        sinks=[
            VirtualCameraSink(VirtualCameraConfig(width=512, height=512, backend="fake")),
            tap.preview(),
        ],
        listener=tap.listener(),
        clock=vclock,
    )
    avatar = grey_avatar(models, 100)
    end, stats = run_engine(vclock, engine, avatar, 3.0)
    assert stats.webcam == "running"
    cam = fakecam.RecordingBackend.instances[-1]
    times = np.array([t for t in cam.times if t <= end])
    assert times[-1] - times[0] > 2.5
    assert np.allclose(np.diff(times), 0.04)  # 25 fps on absolute deadlines
    # Each published frame shows the camera frame it was made from: the stub motion encoder
    # reads the mean RGB of the crop (R = level, B = level // 2 after the BGR swap).
    id_value = float(avatar.tensors["id_latent"][0, 0])
    first = [f for _, f in tap.frames if f.index >= 0]
    checked = 0
    for f in first:
        motion_r = stub_graphs.motion_from_level(f.image[0, 0, 0] / 255.0, id_value)
        motion_b = stub_graphs.motion_from_level(f.image[0, 0, 2] / 255.0, id_value)
        level = captured_level(cv, f.timing.capture)
        assert abs(motion_r - level / 255.0) < 0.02
        assert abs(motion_b - (level // 2) / 255.0) < 0.02
        checked += 1
    assert checked > 60
    # The index is the output-timeline place of the capture (25 per second), not a count of
    # camera frames (30 per second).
    origin = cv.frames_read[0][0]
    for f in first:
        assert f.index == round((f.timing.capture - origin) * 25)
    # Latency of each picture's first publication while live (repeats show an older capture):
    # capture to sent is under one output frame plus one of margin with instant compute.
    seen: set[int] = set()
    lat = []
    for t, f in tap.frames:
        if f.index >= 0 and f.index not in seen and t <= end:
            seen.add(f.index)
            lat.append(f.timing.latency)
    assert len(lat) >= 55 and max(lat) <= 0.08 + 1e-9, max(lat)  # (4 new per 0.2 s, as below)


def test_newest_grabs_place_frames_and_follow_the_camera(vclock: VirtualClock) -> None:
    """The loop both webcam workers (local and remote) run: only the newest frame, never one
    twice, placed on the 25 fps timeline from the first frame taken; a lost camera's frames are
    no longer expected."""
    cv = FakeCv2(fps=30, clock=vclock)
    cam = WebcamSource(
        cv2=cv, config=WebcamConfig(failures_before_lost=3, retry_backoff_s=(5.0,)), clock=vclock
    )
    pacer = Pacer(  # not started: the grabs only set its streaming state and read its rate
        config=PacerConfig(fps=25),
        publish=lambda frame, repeat: None,
        monitor=LatencyMonitor(clock=vclock),
        clock=vclock,
    )
    with vclock.adopting():
        cam.start()
    grabs = NewestGrabs(cam, pacer)
    assert pacer._streaming
    first = grabs.next()
    assert first is not None and first[1] == 0
    origin = first[0].capture
    vclock.sleep(0.5)  # the camera reads about 15 frames meanwhile
    later = grabs.next()
    assert later is not None
    grab, index = later
    assert grab.seq > first[0].seq + 10  # the newest, not the next one
    assert index == round((grab.capture - origin) * 25) and index > 10
    after = grabs.next()  # waits for the camera's next frame rather than repeating this one
    assert after is not None and after[0].seq == grab.seq + 1
    assert pacer._streaming
    cv.plugged = False
    vclock.sleep(0.5)
    assert cam.state is WebcamState.LOST
    assert grabs.next() is None and not pacer._streaming
    vclock.leave()
    assert cam.stop()


def test_webcam_unplug_and_no_camera(vclock: VirtualClock) -> None:
    """A camera that stops delivering is LOST after `failures_before_lost` failed reads, retried
    on the backoff, RUNNING again one backoff step after it is back; a missing camera is
    NO_CAMERA. The times are virtual: the same on any machine."""
    cv = FakeCv2(fps=30, clock=vclock)
    seen: list[tuple[float, WebcamState]] = []
    cam = WebcamSource(
        cv2=cv,
        config=WebcamConfig(failures_before_lost=3, retry_backoff_s=(0.2,)),
        clock=vclock,
        on_state=lambda s, e: seen.append((vclock(), s)),
    )
    with vclock.adopting():
        cam.start()
    first = cam.latest(after=0, timeout=1.0)
    assert first is not None and first.rgb.shape == (480, 640, 3)
    t_unplug = vclock()
    cv.plugged = False
    vclock.sleep(0.5)
    assert cam.state in (WebcamState.LOST, WebcamState.NO_CAMERA)
    lost_at = next(t for t, s in seen if s is WebcamState.LOST)
    # Three failed reads, one frame period apart (each read waits for the next frame).
    assert 2 / 30 <= lost_at - t_unplug <= 4 / 30 + 0.03, lost_at - t_unplug
    retries_unplugged = cam.retries
    assert retries_unplugged >= 1  # the reopen failed at least once while unplugged
    cv.plugged = True
    t_replug = vclock()
    vclock.sleep(0.6)
    assert cam.state is WebcamState.RUNNING
    back_at = next(t for t, s in seen if t >= t_replug and s is WebcamState.RUNNING)
    assert back_at - t_replug <= 0.2 + 2 / 30  # one backoff step, then the next frame
    later = cam.latest(after=first.seq, timeout=1.0)
    assert later is not None and later.seq > first.seq
    vclock.leave()
    assert cam.stop()
    states = [s for _, s in seen]
    assert WebcamState.LOST in states and states[-1] is WebcamState.STOPPED
    vclock.join()
    none = WebcamSource(
        cv2=FakeCv2(fps=30, clock=vclock), config=WebcamConfig(index=3), clock=vclock
    )
    with vclock.adopting():
        none.start()
    vclock.sleep(1.4)
    assert none.state is WebcamState.NO_CAMERA and "cannot be opened" in (none.error or "")
    assert none.retries == 1  # on the default backoff (0.5, 1.0, ...) retried at 0.5, next 1.5
    vclock.sleep(0.2)
    assert none.retries == 2
    vclock.leave()
    assert none.stop()


def test_face_tracker_runs_in_the_engine(
    models: ModelSet, fixtures_dir: Path, vclock: VirtualClock
) -> None:
    """With the default cropper (the real FaceTracker) on a fake camera showing a portrait."""
    import cv2

    portrait = cv2.imread(str(fixtures_dir / "source_3.jpg"))
    portrait = cv2.resize(portrait, (640, 480))
    cv = FakeCv2(fps=30, clock=vclock)

    class PortraitCapture:
        def __init__(self, index: int) -> None:
            self.inner = cv.VideoCapture(index)

        def isOpened(self) -> bool:
            return self.inner.isOpened()

        def set(self, prop: int, value: float) -> bool:
            return True

        def read(self) -> tuple[bool, np.ndarray | None]:
            ok, _ = self.inner.read()
            return ok, portrait.copy() if ok else None

        def release(self) -> None:
            self.inner.release()

    class PortraitCv2(FakeCv2):
        def VideoCapture(self, index: int) -> PortraitCapture:
            return PortraitCapture(index)

    tap = Tap(clock=vclock)
    engine = LiveEngine(
        models=models,
        source=WebcamInput(cv2=PortraitCv2()),
        sinks=[tap.preview()],
        clock=vclock,
    )
    run_engine(vclock, engine, grey_avatar(models, 100), 2.0)
    # Tracking takes no virtual time: of each 6 camera frames (0.2 s) 5 reach the 5 ticks and
    # two of those share an output index, so 4 new pictures per 0.2 s from the first frame on.
    assert len({f.index for _, f in tap.frames if f.index >= 0}) >= 36
