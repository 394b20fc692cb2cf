"""bf16-mixed on OpenVINO: a graph cut into stages by op name, each compiled with its own
precision and run as a chain (`runtime.model.execution.openvino_stages`), and the renderer
session that uses it (small real graphs; full-size results in
tests/bench/results/mixed_precision.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
from openvino import opset13 as ops

from runtime.model import contract as C
from runtime.model.execution.openvino_sessions import OpenVinoSession
from runtime.model.execution.openvino_stages import (
    StagedCompiled,
    StagePlan,
    assign_stages,
    split_model,
)
from runtime.model.execution.precision_plans import CAUTIOUS, renderer_fp32, renderer_stages
from runtime.model.execution.sessions import SessionOptions
from tests.runtime.model.execution.test_sessions import avatar
from tests.support import stub_graphs
from tests.support.fakes.openvino_devices import FakeCore, install

PLAN = StagePlan(
    stages=(("first", ()), ("mid", ("/mid/",)), ("second", ("/second/",))),
    fp32=frozenset({"first", "second"}),
)
MIXED = SessionOptions(backend="openvino", precision="bf16-mixed", openvino_device="CPU")


def _named(node: ov.Node, name: str) -> ov.Node:
    node.set_friendly_name(name)
    return node


def small_model() -> ov.Model:
    """x, y (1, 4, 8, 8) -> out: a conv in "first", an add that reads y again in "mid", a
    conv and a sigmoid in "second"; `y` is read by two stages, the shape arithmetic of a
    reshape folds to constants."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="x")
    y = ops.parameter([1, 4, 8, 8], np.float32, name="y")
    w1 = ops.constant(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3)
    w2 = ops.constant(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3)
    a = _named(ops.convolution(x, w1, [1, 1], [1, 1], [1, 1], [1, 1]), "/first/Conv")
    a = _named(ops.multiply(ops.relu(a), y), "/first/Mul")
    shape = ops.shape_of(a)  # folded: static shapes
    b = _named(ops.add(ops.reshape(a, shape, special_zero=False), y), "/mid/Add")
    c = _named(ops.convolution(b, w2, [1, 1], [1, 1], [1, 1], [1, 1]), "/second/Conv")
    out = _named(ops.sigmoid(c), "/second/Sigmoid")
    out.output(0).get_tensor().set_names({"out"})
    return ov.Model([ops.result(out)], [x, y], "small")


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {n: rng.standard_normal((1, 4, 8, 8)).astype(np.float32) for n in ("x", "y")}


def test_the_chain_computes_what_the_whole_graph_does() -> None:
    core = ov.Core()
    whole = core.compile_model(small_model(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    expected = whole.create_infer_request().infer(_feeds())["out"]
    asked: list[str] = []

    def compile_stage(part: ov.Model, hint: str) -> ov.CompiledModel:
        asked.append(hint)
        return core.compile_model(part, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    staged = StagedCompiled(small_model(), PLAN, compile_stage)
    assert asked == ["f32", "bf16", "f32"]  # the plan's precision per stage, in order
    request = staged.create_infer_request()
    got = request.infer(_feeds())["out"]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    again = request.infer({"x": _feeds()["x"] * 0, "y": _feeds()["y"]})["out"]
    assert not np.allclose(again, got)  # the chain reads new inputs through every stage


def test_stages_read_graph_inputs_and_only_earlier_stages() -> None:
    parts = split_model(small_model(), PLAN)
    names = [sorted(n for p in part.inputs for n in p.get_names()) for part in parts]
    assert names[0] == ["x", "y"]
    assert "y" in names[1] and any(n.startswith("stage_cut_") for n in names[1])
    assert all(n.startswith("stage_cut_") for n in names[2])
    assert [sorted(n for p in part.outputs for n in p.get_names()) for part in parts][2] == ["out"]
    for part in parts:  # every stage has static shapes (the reshape's shape was folded)
        assert all(p.get_partial_shape().is_static for p in part.inputs)


def test_a_plan_for_another_graph_is_refused() -> None:
    plan = StagePlan(stages=(("first", ()), ("decoder", ("/frame_decoder/",))), fp32=frozenset())
    with pytest.raises(ValueError, match="decoder"):
        assign_stages(small_model(), plan)


def test_ops_are_never_placed_before_their_inputs() -> None:
    model = small_model()
    stage_of = assign_stages(model, PLAN)
    for op in model.get_ordered_ops():
        here = stage_of.get(op.get_name())
        if here is None:
            continue
        for value in op.input_values():
            assert stage_of.get(value.get_node().get_name(), 0) <= here


def _staged_renderer(folder: Path) -> Path:
    """The stub renderer with one op per stage of `renderer_stages()` added to its picture,
    named as the exporter names the real renderer's modules."""
    model = stub_graphs.renderer()
    graph = model.graph
    final = next(n for n in graph.node if "frames" in n.output)
    final.output[0] = "picture"
    current = "picture"
    for index, (_, prefixes) in enumerate(renderer_stages()[1:]):
        for prefix in prefixes:
            step = f"step_{index}_{len(current)}"
            graph.initializer.append(
                onnx.numpy_helper.from_array(np.array(1e-3, np.float32), name=step)
            )
            out = f"{prefix}Add_output"
            graph.node.append(onnx.helper.make_node("Add", [current, step], [out],
                                                    name=f"{prefix}Add"))  # fmt: skip
            current = out
    graph.node.append(onnx.helper.make_node("Identity", [current], ["frames"], name="out"))
    path = folder / C.RENDERER.filename
    onnx.save(model, str(path))
    return path


def test_the_renderer_session_runs_bf16_mixed_in_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _staged_renderer(tmp_path)
    feeds = {**avatar(0.2), "motion": np.full((1, 32), 0.1, np.float32)}
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = reference.run(["frames"], feeds)[0]
    core = install(monkeypatch, FakeCore(capabilities={"CPU": ("FP32", "BF16")}))
    session = OpenVinoSession(C.RENDERER, path, options=MIXED)
    got = session.run(feeds)["frames"]
    hints = [config["INFERENCE_PRECISION_HINT"] for _, config in core.compiled]
    # No config beside the graph: a v1 export (before versions), v1's plan, one compiled
    # model per run of stages of one precision.
    runs = [
        n for n, _ in StagePlan(stages=renderer_stages(), fp32=renderer_fp32("v1")).merged().stages
    ]
    assert runs == ["motion", "up0+at0+up1+at1", "up2", "at2", "up3", "at3+up4+at4+head"]
    assert hints == ["f32", "bf16", "f32", "bf16", "f32", "bf16"]
    assert "bf16-mixed" in session.summary()
    np.testing.assert_allclose(got, expected, atol=2e-2)


def test_neighbouring_stages_of_one_precision_are_compiled_together() -> None:
    stages = (("a", ()), ("b", ("/b/",)), ("c", ("/c/", "/cc/")), ("d", ("/d/",)))
    plan = StagePlan(stages=(*stages, ("e", ("/e/",))), fp32=frozenset({"a", "d", "e"}))
    merged = plan.merged()
    assert merged.stages == (("a", ()), ("b+c", ("/b/", "/c/", "/cc/")), ("d+e", ("/d/", "/e/")))
    assert merged.fp32 == {"a", "d+e"} and merged.precision("b+c") == "bf16"
    # The same op lands in the merged stage that holds its original stage.
    model = small_model()
    fine = assign_stages(model, StagePlan(stages=PLAN.stages, fp32=frozenset({"first"})))
    coarse = assign_stages(model, StagePlan(stages=PLAN.stages, fp32=frozenset({"first"})).merged())
    assert {k: min(v, 1) for k, v in fine.items()} == coarse
    # Compiled: one model per run, or per stage when asked (the sensitivity bench times them).
    core = ov.Core()
    one_run = StagePlan(stages=PLAN.stages, fp32=frozenset({"first"}))

    def compile_stage(part: ov.Model, hint: str) -> ov.CompiledModel:
        return core.compile_model(part, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    assert len(StagedCompiled(small_model(), one_run, compile_stage).stages) == 2
    apart = StagedCompiled(small_model(), one_run, compile_stage, merge=False)
    assert len(apart.stages) == 3
    got = apart.create_infer_request().infer(_feeds())["out"]
    whole = StagedCompiled(small_model(), one_run, compile_stage).create_infer_request()
    np.testing.assert_allclose(got, whole.infer(_feeds())["out"], rtol=1e-6, atol=1e-6)


def test_each_version_has_a_plan_and_an_unknown_one_gets_every_stage_either_keeps() -> None:
    stages = {name for name, _ in renderer_stages()}
    for version in ("v1", "v2"):
        assert "motion" in renderer_fp32(version) <= stages  # the top-1 picks stay exact
        assert renderer_fp32(version) <= CAUTIOUS
    assert renderer_fp32(None) == renderer_fp32("v3") == CAUTIOUS


def test_bf16_mixed_without_stages_or_bf16_runs_fp32_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubs = stub_graphs.write_stub_graphs(tmp_path / "stubs")
    feeds = {**avatar(0.2), "motion": np.full((1, 32), 0.1, np.float32)}
    core = install(monkeypatch, FakeCore(capabilities={"CPU": ("FP32", "BF16")}))
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=MIXED)
    session.run(feeds)
    assert "no stages for bf16-mixed" in session.summary()
    assert [c["INFERENCE_PRECISION_HINT"] for _, c in core.compiled] == ["f32"]
    core = install(monkeypatch, FakeCore(capabilities={"CPU": ("FP32",)}))
    session = OpenVinoSession(C.RENDERER, _staged_renderer(tmp_path), options=MIXED)
    session.run(feeds)
    assert "no native bf16-mixed" in session.summary()
    assert [c["INFERENCE_PRECISION_HINT"] for _, c in core.compiled] == ["f32"]
    velocity = OpenVinoSession(C.VELOCITY, stubs / C.VELOCITY.filename, options=MIXED)
    assert velocity.precision == "f32" and not velocity.notices  # only the renderer is mixed
