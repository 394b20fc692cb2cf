"""Webcam mode on a render server: the engine crops the face here and sends the crop; each
picture that comes back shows the camera frame it was made from. The server is the render
server's session code on an in-process WebSocket server (Ray is tested in test_remote_serve);
the camera is a fake (hardware)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from runtime.engine.live.engine import LiveEngine, WebcamInput
from runtime.engine.live.remote import RemoteCompute, remote_avatar
from runtime.model.execution.model_set import open_model_set
from runtime.model.versions import V2
from runtime.remote.client import RemoteConfig
from tests.support import stub_graphs
from tests.support.fakes.camera import FakeCv2
from tests.support.live import CPU, Tap
from tests.support.remote import TOKEN, InProcessServer, serving
from tests.support.waiting import wait_until


class CentreCrop512:
    """Stands in for the face tracker: the centre square at 512 px."""

    def update(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        square = rgb[y : y + s, x : x + s]
        reps = -(-512 // s)
        return np.ascontiguousarray(np.tile(square, (reps, reps, 1))[:512, :512])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    models = open_model_set(
        stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"), version=V2), options=CPU
    )
    with serving(models, capacity=1) as s:
        yield s


def test_webcam_crops_drive_the_avatar_on_the_server(server: InProcessServer) -> None:
    cv = FakeCv2(fps=30)
    tap = Tap(keep_images=True)
    engine = LiveEngine(
        models=None,
        source=WebcamInput(cv2=cv, cropper=CentreCrop512),
        sinks=[tap.preview()],
        listener=tap.listener(),
        compute=RemoteCompute(config=RemoteConfig(url=server.url, token=TOKEN, frame_format="raw")),
    )
    level = 100
    engine.start(remote_avatar(np.full((512, 512, 3), level, np.uint8), "grey"))
    try:
        wait_until(
            lambda: len({f.index for _, f in list(tap.frames) if f.index >= 0}) >= 30,
            20.0,
            what=lambda: f"30 frames; events: {tap.events}",
        )
        stats = engine.stats()
    finally:
        assert engine.stop()
    assert stats.remote == "connected" and stats.webcam == "running"
    id_value = level / 255.0  # the stub avatar encoder: the mean of the photo
    checked = 0
    seen: set[int] = set()
    for _, f in tap.frames:
        if f.index < 0 or f.index in seen:
            continue
        seen.add(f.index)
        when, n = min(cv.frames_read, key=lambda r: abs(r[0] - f.timing.capture))
        assert abs(when - f.timing.capture) < 0.005  # camera frames are 33 ms apart
        # The crop's red mean is the camera level (BGR frames; the stub encoder reads RGB).
        motion = stub_graphs.motion_from_level(f.image[0, 0, 0] / 255.0, id_value)
        assert abs(motion - cv.pattern(n) / 255.0) < 0.03, (f.index, n)
        checked += 1
    assert checked >= 30
