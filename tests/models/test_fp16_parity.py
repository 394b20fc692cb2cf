"""The exporter's fp16 (mixed-precision) renderer and velocity graphs against their fp32
originals on the golden inputs, executed by ONNX Runtime's CPU provider, for every model
version (full-size graphs from the shared conversion fixtures). Tolerances (issue 13): frames
mean |d| <= 2e-3, p99 <= 2e-2, no NaN/Inf; motion latents rel <= 1e-2 after the sampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.recipe import golden_version_dir
from runtime.engine.motion_sampler import (
    RawConditions,
    conditioner_from_session,
    fixed_noise,
    sample_motion,
    velocity_from_session,
)
from runtime.model import contract
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.sessions import GraphSession, SessionOptions
from runtime.model.versions import VERSIONS, ModelVersion
from tests.support.golden import rel_err

pytestmark = pytest.mark.slow

FIXTURES = {"v1": "recipe_graphs", "v2": "recipe_graphs_v2"}
CPU = SessionOptions(providers=("CPUExecutionProvider",))
FP16 = SessionOptions(providers=("CPUExecutionProvider",), precision="fp16")


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def version(request: pytest.FixtureRequest) -> ModelVersion:
    return VERSIONS[request.param]


@pytest.fixture(scope="module")
def graphs_dir(request: pytest.FixtureRequest, version: ModelVersion) -> Path:
    path: Path = request.getfixturevalue(FIXTURES[version.name])
    return path


def _spec(version: ModelVersion, name: str) -> contract.GraphSpec:
    return {s.name: s for s in contract.graphs(version)}[name]


def test_config_names_what_stays_fp32(graphs_dir: Path) -> None:
    for name in contract.FP16_GRAPHS:
        info = json.loads((graphs_dir / f"{name}.json").read_text())["fp16_variant"]
        assert info["file"] == f"{name}.fp16.onnx" and info["io"] == "float32"
        assert "Sin" in info["fp32_op_types"] or name == "renderer"
    renderer = json.loads((graphs_dir / "renderer.json").read_text())["fp16_variant"]
    # The resampler's top-1 chain (logits, softmax, head mean) and the pick itself (ReduceMax +
    # ArgMax since the export stopped using TopK) are kept in fp32.
    kinds = {n.split("/")[-1].split("_")[0] for n in renderer["fp32_nodes"]}
    assert {"MatMul", "Softmax", "ReduceMean", "ReduceMax", "ArgMax"} <= kinds, renderer[
        "fp32_nodes"
    ]


def test_fp16_renderer_frames(graphs_dir: Path, golden_dir: Path, version: ModelVersion) -> None:
    golden = dict(np.load(golden_version_dir(golden_dir, version) / "renderer_golden.npz"))
    enc = GraphSession(_spec(version, "avatar_encoder"), graphs_dir / "avatar_encoder.onnx",
                       options=CPU)  # fmt: skip
    out = enc.run({"source": golden["source"]})
    avatar = {t.name: out[t.name] for t in contract.AVATAR_TENSORS}
    frames = {}
    for label, options in (("fp32", CPU), ("fp16", FP16)):
        path = graphs_dir / contract.RENDERER.filename_for(options.precision)
        device = DeviceRenderer(GraphSession(contract.RENDERER, path, options=options))
        device.use(avatar)
        frames[label] = device.render(golden["motion_latents"]).copy()
    assert np.isfinite(frames["fp16"]).all()
    d = np.abs(frames["fp16"].astype(np.float64) - frames["fp32"])
    assert d.mean() <= 2e-3, d.mean()
    assert np.percentile(d, 99) <= 2e-2, np.percentile(d, 99)


def test_fp16_velocity_motion_latents(
    graphs_dir: Path, golden_dir: Path, version: ModelVersion
) -> None:
    golden = dict(np.load(golden_version_dir(golden_dir, version) / "generator_golden.npz"))
    conditioner = GraphSession(_spec(version, "conditioner"), graphs_dir / "conditioner.onnx",
                               options=CPU)  # fmt: skip
    motion = {}
    for label, options in (("fp32", CPU), ("fp16", FP16)):
        spec = _spec(version, "velocity")
        velocity = GraphSession(spec, graphs_dir / spec.filename_for(options.precision),
                                options=options)  # fmt: skip
        motion[label] = sample_motion(
            velocity_from_session(DeviceGraph(velocity)),
            conditioner_from_session(conditioner),
            audio_features=golden["audio_features"][0],
            ref_motion=golden["ref_motion"][0],
            raw_conditions=RawConditions(
                gaze=golden["gaze"], pose=golden["pose"], cam=golden["cam"]
            ),
            cfg_scale=3.0,
            nfe=10,
            noise=fixed_noise(25),
        )
    assert np.isfinite(motion["fp16"]).all()
    assert rel_err(motion["fp16"], motion["fp32"]) <= 1e-2
