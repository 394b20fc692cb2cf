"""The accuracy gate of ``--backend auto`` on full-size graphs: OpenVINO against ONNX Runtime
fp32 on the golden inputs of every model version (recipe weights, shared conversion fixtures).
Tolerances (issue 22, the same as fp16's): frames mean |d| <= 2e-3 and p99 <= 2e-2, no NaN/Inf;
the sampler's motion latents rel <= 1e-2. OpenVINO fp32 is inside, so auto may pick it; bf16 is
outside (measured mean 4e-3 to 1e-2, PSNR 37-45 dB), so auto never does and it is offered only as an
explicit choice labelled with its PSNR; bf16-mixed (the renderer's sensitive stages in fp32) is
inside again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.recipe import golden_version_dir
from runtime.engine.backend_trials import psnr_db
from runtime.engine.motion_sampler import (
    RawConditions,
    conditioner_from_session,
    fixed_noise,
    sample_motion,
    velocity_from_session,
)
from runtime.model import contract
from runtime.model.execution.backends import TOLERANCE
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.openvino_sessions import OpenVinoSession, bf16_supported
from runtime.model.execution.sessions import GraphSession, SessionOptions
from runtime.model.versions import VERSIONS, ModelVersion
from tests.support.golden import rel_err

pytestmark = pytest.mark.slow

FIXTURES = {"v1": "recipe_graphs", "v2": "recipe_graphs_v2"}
ORT = SessionOptions(providers=("CPUExecutionProvider",))
OV_FP32 = SessionOptions(backend="openvino", openvino_device="CPU")
OV_BF16 = SessionOptions(backend="openvino", openvino_device="CPU", precision="bf16")
OV_BF16_MIXED = SessionOptions(backend="openvino", openvino_device="CPU", precision="bf16-mixed")


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def version(request: pytest.FixtureRequest) -> ModelVersion:
    return VERSIONS[request.param]


@pytest.fixture(scope="module")
def graphs_dir(request: pytest.FixtureRequest, version: ModelVersion) -> Path:
    path: Path = request.getfixturevalue(FIXTURES[version.name])
    return path


def _spec(version: ModelVersion, name: str) -> contract.GraphSpec:
    return {s.name: s for s in contract.graphs(version)}[name]


def _frames(session: GraphSession, avatar: dict[str, np.ndarray], motion: np.ndarray) -> np.ndarray:
    device = DeviceRenderer(session)
    device.use(avatar)
    return device.render(motion).copy()


def test_renderer_frames(graphs_dir: Path, golden_dir: Path, version: ModelVersion) -> None:
    golden = dict(np.load(golden_version_dir(golden_dir, version) / "renderer_golden.npz"))
    enc = GraphSession(_spec(version, "avatar_encoder"), graphs_dir / "avatar_encoder.onnx",
                       options=ORT)  # fmt: skip
    out = enc.run({"source": golden["source"]})
    avatar = {t.name: out[t.name] for t in contract.AVATAR_TENSORS}
    motion = golden["motion_latents"][:1]  # one frame: three renderers, the suite's time
    path = graphs_dir / contract.RENDERER.filename
    reference = _frames(GraphSession(contract.RENDERER, path, options=ORT), avatar, motion)

    fp32 = _frames(OpenVinoSession(contract.RENDERER, path, options=OV_FP32), avatar, motion)
    assert np.isfinite(fp32).all()
    d = np.abs(fp32.astype(np.float64) - reference)
    assert TOLERANCE.frames_ok(float(d.mean()), float(np.percentile(d, 99))), (
        d.mean(),
        np.percentile(d, 99),
    )

    if not bf16_supported():
        pytest.skip("this CPU has no native bf16")
    session = OpenVinoSession(contract.RENDERER, path, options=OV_BF16)
    assert session.precision == "bf16"
    bf16 = _frames(session, avatar, motion)
    assert np.isfinite(bf16).all()
    d = np.abs(bf16.astype(np.float64) - reference)
    mean, p99 = float(d.mean()), float(np.percentile(d, 99))
    # Usable as a labelled choice (the picture holds), but outside the gate: if a newer
    # OpenVINO brings it inside, let `backends.candidates` offer it to auto and say so.
    assert psnr_db(bf16, reference) > 30.0
    assert not TOLERANCE.frames_ok(mean, p99), (mean, p99)

    # bf16-mixed: the stages measured most sensitive stay fp32 (precision_plans), and that
    # brings bf16 inside the gate on both versions, so auto may take it.
    session = OpenVinoSession(contract.RENDERER, path, options=OV_BF16_MIXED)
    mixed = _frames(session, avatar, motion)
    assert "bf16-mixed" in session.summary() and not session.notices
    d = np.abs(mixed.astype(np.float64) - reference)
    assert TOLERANCE.frames_ok(float(d.mean()), float(np.percentile(d, 99))), (
        d.mean(),
        np.percentile(d, 99),
    )


def test_sampler_motion(graphs_dir: Path, golden_dir: Path, version: ModelVersion) -> None:
    golden = dict(np.load(golden_version_dir(golden_dir, version) / "generator_golden.npz"))
    conditioner = GraphSession(_spec(version, "conditioner"), graphs_dir / "conditioner.onnx",
                               options=ORT)  # fmt: skip
    spec = _spec(version, "velocity")
    motion = {}
    for label, session in (
        ("ort", GraphSession(spec, graphs_dir / spec.filename, options=ORT)),
        ("ov", OpenVinoSession(spec, graphs_dir / spec.filename, options=OV_FP32)),
    ):
        motion[label] = sample_motion(
            velocity_from_session(DeviceGraph(session)),
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
    assert np.isfinite(motion["ov"]).all()
    assert TOLERANCE.motion_ok(rel_err(motion["ov"], motion["ort"]))
