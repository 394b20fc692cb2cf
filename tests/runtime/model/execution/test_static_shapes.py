"""Static-shape copies of the fixed-shape graphs for CoreML (issue 22): the copies of the real
stub graphs opened on the CPU provider (static inputs, the dynamic graph's outputs), and a
CoreML request going through them per input shape with the last two kept (CoreML itself faked:
tests/support/fakes/coreml.py), its fallbacks and what the summary says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runtime.model import contract as C
from runtime.model.execution import static_shapes
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import GraphSession, SessionOptions
from runtime.model.execution.static_shapes import (
    CACHE_KEY,
    StaticShapeSession,
    fixed_copy,
    static_key,
)
from tests.runtime.model.execution.test_sessions import avatar
from tests.support import stub_graphs
from tests.support.fakes.coreml import COREML, install

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"), velocity_gain=0.5)


def coreml(cache: Path) -> SessionOptions:
    return SessionOptions(providers=(COREML, "CPUExecutionProvider"), coreml_cache_dir=cache)


def inputs_for(spec: C.GraphSpec, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = {
        t.name: tuple(batch if isinstance(d, str) else d for d in t.shape) for t in spec.inputs
    }
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}


@pytest.mark.parametrize(("spec", "batch"), [(C.RENDERER, 3), (C.VELOCITY, 2)])
def test_a_fixed_copy_has_static_inputs_and_gives_the_dynamic_graphs_outputs(
    stubs: Path, tmp_path: Path, spec: C.GraphSpec, batch: int
) -> None:
    rng = np.random.default_rng(5)
    feeds = inputs_for(spec, batch, rng)
    shapes = {name: a.shape for name, a in feeds.items()}
    path = stubs / spec.filename
    copy = fixed_copy(path, shapes, folder=tmp_path)
    fixed = ort.InferenceSession(str(copy), providers=CPU)
    assert {i.name: tuple(i.shape) for i in fixed.get_inputs()} == shapes  # all static
    assert all(isinstance(d, int) for o in fixed.get_outputs() for d in o.shape)
    dynamic = ort.InferenceSession(str(path), providers=CPU)
    assert any(isinstance(d, str) for i in dynamic.get_inputs() for d in i.shape)
    for got, want in zip(fixed.run(None, feeds), dynamic.run(None, feeds), strict=True):
        np.testing.assert_array_equal(got, want)
    # Named and keyed (CoreML's own cache too) by the graph's content and the shapes.
    key = static_key(static_shapes.content_digest(path), shapes)
    assert copy.name == f"{spec.name}.{key}.onnx"
    props = {p.key: p.value for p in onnx.load(str(copy)).metadata_props}
    assert props[CACHE_KEY] == key and len(key) <= 64
    assert fixed_copy(path, shapes, folder=tmp_path) == copy  # written once
    other = {**shapes, next(iter(shapes)): (batch + 1, *next(iter(shapes.values()))[1:])}
    assert static_key("0" * 64, shapes) != static_key("1" * 64, shapes)
    assert static_key("0" * 64, shapes) != static_key("0" * 64, other)


def test_a_coreml_request_runs_the_fixed_shape_graphs_on_static_copies(
    stubs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch)
    models = open_model_set(stubs, options=coreml(tmp_path / "coreml"))
    renderer, velocity = models[C.RENDERER.name], models[C.VELOCITY.name]
    assert isinstance(renderer, StaticShapeSession) and isinstance(velocity, StaticShapeSession)
    audio = models[C.AUDIO_ENCODER.name]
    assert not isinstance(audio, StaticShapeSession)  # audio of any length: dynamic axes
    per_shape = (C.RENDERER.name, C.VELOCITY.name)
    dynamic = [stubs / g.filename for g in C.graphs(models.version) if g.name not in per_shape]
    assert fake.opened_on_coreml() == dynamic  # nothing opened yet for the fixed-shape ones
    assert models.summary().startswith("CoreML, ") and ", static shapes" in models.summary()
    assert renderer.device == ("cpu", 0)  # CoreML takes host memory

    rng = np.random.default_rng(2)
    tensors = avatar(0.3, rng)
    reference = GraphSession(C.RENDERER, stubs / C.RENDERER.filename,
                             options=SessionOptions(providers=tuple(CPU)))  # fmt: skip
    device = DeviceRenderer(renderer)
    device.use(tensors)
    for batch in (1, 3, 1, 2):
        motion = rng.standard_normal((batch, C.MOTION_DIM)).astype(np.float32)
        want = reference.run({**tensors, "motion": motion})["frames"]
        np.testing.assert_allclose(device.render(motion), want, atol=1e-6)
        np.testing.assert_allclose(renderer.run({**tensors, "motion": motion})["frames"], want,
                                   atol=1e-6)  # fmt: skip
    folder = tmp_path / "coreml" / "static"
    copies = [p for p in fake.opened_on_coreml() if p.parent == folder]
    assert len(copies) == 3 and len(set(copies)) == 3  # batches 1, 3, then 2: each once
    assert [k[0][0] for k in renderer.copies] == [1, 2]  # the last two stay open
    assert sorted(folder.iterdir()) == sorted(copies)
    for path in copies:  # each session opened on CoreML has static inputs
        session = ort.InferenceSession(str(path), providers=CPU)
        assert all(isinstance(d, int) for i in session.get_inputs() for d in i.shape)

    feeds = inputs_for(C.VELOCITY, 2, rng)
    want = GraphSession(C.VELOCITY, stubs / C.VELOCITY.filename,
                        options=SessionOptions(providers=tuple(CPU))).run(feeds)  # fmt: skip
    got = DeviceGraph(velocity).run(feeds)
    np.testing.assert_allclose(got["velocity"], want["velocity"], atol=1e-6)
    assert len(velocity.copies) == 1


def test_coreml_that_cannot_build_a_copy_falls_back_to_the_cpu_with_a_notice(
    stubs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch)
    fake.reject.add(C.RENDERER.name)
    renderer = open_model_set(stubs, options=coreml(tmp_path), names=[C.RENDERER.name])["renderer"]
    tensors = avatar(0.2)
    frames = renderer.run({**tensors, "motion": np.zeros((1, C.MOTION_DIM), np.float32)})
    assert frames["frames"].shape == (1, 3, C.FRAME_SIZE, C.FRAME_SIZE)
    assert renderer.provider == "CPUExecutionProvider"
    assert renderer.notices == [
        "CoreML could not build this graph (RuntimeError: unsupported partition); using CPU"
    ]


def test_without_onnx_coreml_opens_the_dynamic_graph_with_a_notice(
    stubs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch)
    monkeypatch.setattr(static_shapes, "onnx_available", lambda: False)
    models = open_model_set(stubs, options=coreml(tmp_path), names=[C.RENDERER.name])
    renderer = models[C.RENDERER.name]
    assert fake.opened_on_coreml() == [stubs / C.RENDERER.filename]
    device = DeviceRenderer(renderer)
    device.use(avatar(0.1))
    assert device.render(np.zeros((2, C.MOTION_DIM), np.float32)).shape[0] == 2
    assert "static shapes" not in models.summary()
    assert "onnx package" in models.summary()
    assert not (tmp_path / "static").exists()
