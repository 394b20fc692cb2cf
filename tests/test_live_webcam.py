"""Video-driven live mode: fake webcam -> face crop -> motion encoder -> renderer -> pacer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.engine.live import LiveEngine, WebcamInput
from runtime.media.webcam import WebcamConfig, WebcamSource, WebcamState
from runtime.model.sessions import ModelSet
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink
from tests import stub_graphs
from tests.fakes import virtual_camera as fakecam
from tests.fakes.camera import FakeCv2
from tests.live_support import Tap, grey_avatar, stub_models


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
    time.sleep(0.05)
    names = {t.name for t in threading.enumerate()}
    assert not names & {"live-worker", "pacer", "webcam"}


def test_webcam_drives_the_avatar(models: ModelSet) -> None:
    cv = FakeCv2(fps=30)
    tap = Tap()
    engine = LiveEngine(
        models=models,
        source=WebcamInput(cv2=cv, cropper=CentreCrop),
        sinks=[
            VirtualCameraSink(VirtualCameraConfig(width=512, height=512, backend="fake")),
            tap.preview(),
        ],
        listener=tap.listener(),
    )
    avatar = grey_avatar(models, 100)
    engine.start(avatar)
    time.sleep(3.0)
    stats = engine.stats()
    assert engine.stop()
    times = np.array(fakecam.RecordingBackend.instances[-1].times)
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert abs(rate - 25) / 25 < 0.02
    assert stats.webcam == "running"
    # Each published frame shows the camera frame it was made from: the stub motion encoder
    # reads the mean RGB of the crop (R = level, B = level // 2 after the BGR swap).
    id_value = float(avatar.tensors["id_latent"][0, 0])
    levels = dict((n, cv.pattern(n)) for _, n in cv.frames_read)
    checked = 0
    for _, f in tap.frames:
        if f.index < 0:
            continue
        motion_r = stub_graphs.motion_from_level(f.image[0, 0, 0] / 255.0, id_value)
        motion_b = stub_graphs.motion_from_level(f.image[0, 0, 2] / 255.0, id_value)
        level = levels[f.index]
        assert abs(motion_r - level / 255.0) < 0.02
        assert abs(motion_b - (level // 2) / 255.0) < 0.02
        checked += 1
    assert checked > 60
    lat = stats.latency
    assert lat.latency_p50_ms < 150  # one frame of render + one of margin


def test_webcam_unplug_and_no_camera() -> None:
    cv = FakeCv2(fps=30)
    states: list[WebcamState] = []
    cam = WebcamSource(
        cv2=cv,
        config=WebcamConfig(failures_before_lost=3, retry_backoff_s=(0.2,)),
        on_state=lambda s, e: states.append(s),
    )
    cam.start()
    first = cam.latest(after=0, timeout=1.0)
    assert first is not None and first.rgb.shape == (480, 640, 3)
    cv.plugged = False
    time.sleep(0.5)
    assert cam.state in (WebcamState.LOST, WebcamState.NO_CAMERA)
    cv.plugged = True
    time.sleep(0.6)
    assert cam.state is WebcamState.RUNNING
    later = cam.latest(after=first.seq, timeout=1.0)
    assert later is not None and later.seq > first.seq
    assert cam.stop()
    assert WebcamState.LOST in states and states[-1] is WebcamState.STOPPED
    cv.present = False
    none = WebcamSource(cv2=FakeCv2(fps=30), config=WebcamConfig(index=3))
    none.start()
    time.sleep(0.2)
    assert none.state is WebcamState.NO_CAMERA and "cannot be opened" in (none.error or "")
    assert none.stop()


def test_face_tracker_runs_in_the_engine(models: ModelSet, fixtures_dir: Path) -> None:
    """With the default cropper (the real FaceTracker) on a fake camera showing a portrait."""
    import cv2

    portrait = cv2.imread(str(fixtures_dir / "source_3.jpg"))
    portrait = cv2.resize(portrait, (640, 480))
    cv = FakeCv2(fps=30)

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

    tap = Tap()
    engine = LiveEngine(models=models, source=WebcamInput(cv2=PortraitCv2()), sinks=[tap.preview()])
    engine.start(grey_avatar(models, 100))
    time.sleep(2.0)
    assert engine.stop()
    assert len({f.index for _, f in tap.frames}) > 30
