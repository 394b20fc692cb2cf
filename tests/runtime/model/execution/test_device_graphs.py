"""The device-resident path (IOBinding with preallocated, fixed-address buffers) on the CPU
provider: the same code the live engine and the offline render run on a GPU (stub graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from runtime.engine.motion_sampler import velocity_feeds
from runtime.model import contract as C
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer, output_shapes
from runtime.model.execution.sessions import GraphSession, SessionOptions
from tests.runtime.model.execution.test_sessions import avatar
from tests.support import stub_graphs

CPU_ONLY = SessionOptions(providers=("CPUExecutionProvider",))


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"), velocity_gain=0.5)


@pytest.fixture
def renderer_session(stubs: Path) -> GraphSession:
    return GraphSession(C.RENDERER, stubs / C.RENDERER.filename, options=CPU_ONLY)


def test_device_renderer_equals_plain_run(renderer_session: GraphSession) -> None:
    rng = np.random.default_rng(2)
    tensors = avatar(0.4, rng)
    device = DeviceRenderer(renderer_session)
    device.use(tensors)
    for batch in (1, 4, 1, 3):  # batch sizes alternate: each has its own bound buffers
        motion = rng.standard_normal((batch, 32)).astype(np.float32)
        got = device.render(motion)
        want = renderer_session.run({**tensors, "motion": motion})["frames"]
        assert got.shape == (batch, 3, 512, 512)
        np.testing.assert_array_equal(got, want)
    level = got[:, :, 0, 0]
    decoded = stub_graphs.motion_from_level(level, float(tensors["id_latent"][0, 0]))
    np.testing.assert_allclose(decoded, motion[:, :3], atol=1e-4)


def test_buffers_are_allocated_once_and_reused(renderer_session: GraphSession) -> None:
    device = DeviceRenderer(renderer_session)
    tensors = avatar(0.2)
    device.use(tensors)
    first = device.render(np.zeros((2, 32), np.float32))
    kept = first.copy()
    ones = np.ones((2, 32), np.float32)
    second = device.render(ones)
    # Same host buffer, new contents: a frame is valid until the next render of its batch size.
    assert second.ctypes.data == first.ctypes.data
    assert not np.array_equal(second, kept)
    np.testing.assert_array_equal(
        second, renderer_session.run({**tensors, "motion": ones})["frames"]
    )
    assert len(device.graph._slots) == 1


def test_avatar_is_uploaded_only_when_it_changes(
    renderer_session: GraphSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = DeviceRenderer(renderer_session)
    uploads: list[str] = []
    original = ort.OrtValue.update_inplace

    def counting(self: ort.OrtValue, array: np.ndarray) -> None:
        uploads.append(str(array.shape))
        original(self, array)

    monkeypatch.setattr(ort.OrtValue, "update_inplace", counting)
    first, second = avatar(0.1), avatar(0.9)
    motion = np.full((2, 32), 0.5, np.float64)  # float64 is cast
    device.use(first)
    before = device.render(motion).copy()
    assert len(uploads) == len(C.AVATAR_TENSORS) + 1  # the avatar once, then the motion
    uploads.clear()
    for _ in range(3):
        device.use(first)
        device.render(motion)
    assert len(uploads) == 3  # motion only: the avatar stays on the device
    device.use(second)
    after = device.render(motion)
    want = renderer_session.run({**second, "motion": motion})["frames"]
    np.testing.assert_array_equal(after, want)
    assert not np.array_equal(after, before)


def test_bad_avatars_and_other_graphs_are_refused(
    stubs: Path, renderer_session: GraphSession
) -> None:
    device = DeviceRenderer(renderer_session)
    with pytest.raises(RuntimeError, match="before use"):
        device.render(np.zeros((1, 32), np.float32))
    tensors = avatar(0.1)
    del tensors["cross_key_2"]
    with pytest.raises(KeyError, match="cross_key_2"):
        device.use(tensors)
    tensors = avatar(0.1)
    tensors["appearance_5"] = tensors["appearance_5"][:, :, :128]
    with pytest.raises(ValueError, match="appearance_5"):
        device.use(tensors)
    other = GraphSession(C.MOTION_ENCODER, stubs / C.MOTION_ENCODER.filename, options=CPU_ONLY)
    with pytest.raises(ValueError, match="renderer graph"):
        DeviceRenderer(other)


def test_run_can_be_terminated(renderer_session: GraphSession) -> None:
    device = DeviceRenderer(renderer_session)
    device.use(avatar(0.2))
    stop = ort.RunOptions()
    stop.terminate = True
    with pytest.raises(Exception, match=r"(?i)terminat"):
        device.render(np.zeros((1, 32), np.float32), run_options=stop)
    assert device.render(np.zeros((1, 32), np.float32)).shape == (1, 3, 512, 512)


def test_velocity_through_device_graph_equals_plain_run(stubs: Path) -> None:
    session = GraphSession(C.VELOCITY, stubs / C.VELOCITY.filename, options=CPU_ONLY)
    graph = DeviceGraph(session)
    rng = np.random.default_rng(5)
    from runtime.engine.motion_sampler import ChunkContext, ProjectedConditions

    conditions = ProjectedConditions.zeros(C.CLIP_FRAMES)
    for step in range(3):
        feeds = velocity_feeds(
            t=step / 3,
            x=rng.standard_normal((C.CLIP_FRAMES, C.MOTION_DIM)).astype(np.float32),
            ref_motion=rng.standard_normal(C.MOTION_DIM).astype(np.float32),
            conditions=conditions,
            context=ChunkContext.zeros(),
            cfg_scale=2.0,
        )
        got = graph.run(feeds)["velocity"]
        np.testing.assert_array_equal(got, session.run(feeds)["velocity"])
    assert output_shapes(session, {n: np.shape(v) for n, v in feeds.items()}) == {
        "velocity": (1, C.CLIP_FRAMES, C.MOTION_DIM)
    }


class _CaptureFails(GraphSession):
    """A session that claims CUDA-graph capture and fails its first run, as ORT does when a
    graph cannot be captured (the fake is the GPU; the fallback logic is real)."""

    @property
    def cuda_graph(self) -> bool:
        return True

    def run_with_binding(
        self, binding: ort.IOBinding, *, run_options: ort.RunOptions | None = None
    ) -> None:
        raise RuntimeError("CUDA graph capture failed: operation not permitted when capturing")


def test_failed_cuda_graph_capture_falls_back_with_a_notice(stubs: Path) -> None:
    path = stubs / C.RENDERER.filename
    reopened: list[GraphSession] = []

    def reopen(session: GraphSession) -> GraphSession:
        fresh = GraphSession(session.spec, session.path, options=CPU_ONLY)
        reopened.append(fresh)
        return fresh

    device = DeviceRenderer(_CaptureFails(C.RENDERER, path, options=CPU_ONLY), reopen=reopen)
    tensors = avatar(0.3)
    device.use(tensors)
    motion = np.full((2, 32), 0.25, np.float32)
    got = device.render(motion)
    np.testing.assert_array_equal(got, reopened[0].run({**tensors, "motion": motion})["frames"])
    assert device.session is reopened[0] and not device.session.cuda_graph
    assert len(device.notices) == 1 and "CUDA graphs unavailable" in device.notices[0]
    device.render(motion)
    assert len(reopened) == 1  # once
