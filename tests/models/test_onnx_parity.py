"""ONNX Runtime vs the golden reference outputs and the PyTorch port, for every exported graph,
at batch 1 and batch > 1, for every model version (full-size graphs exported from recipe
checkpoints; one export per version per session, shared through conftest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.loading import LoadedModels, load_models
from models.recipe import golden_version_dir
from runtime.model import contract
from runtime.model.execution.sessions import GraphSession, SessionOptions
from runtime.model.versions import VERSIONS, ModelVersion
from tests.support.golden import assert_frames_close, rel_err

pytestmark = pytest.mark.slow

# Each version's conftest fixtures (recipe checkpoints, then their compiled graphs).
FIXTURES = {
    "v1": ("recipe_weights", "recipe_graphs"),
    "v2": ("recipe_weights_v2", "recipe_graphs_v2"),
}


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def version(request: pytest.FixtureRequest) -> ModelVersion:
    return VERSIONS[request.param]


@pytest.fixture(scope="module")
def graphs_dir(request: pytest.FixtureRequest, version: ModelVersion) -> Path:
    path: Path = request.getfixturevalue(FIXTURES[version.name][1])
    return path


@pytest.fixture(scope="module")
def golden_g(golden_dir: Path, version: ModelVersion) -> dict[str, np.ndarray]:
    return dict(np.load(golden_version_dir(golden_dir, version) / "generator_golden.npz"))


@pytest.fixture(scope="module")
def golden_r(golden_dir: Path, version: ModelVersion) -> dict[str, np.ndarray]:
    return dict(np.load(golden_version_dir(golden_dir, version) / "renderer_golden.npz"))


@pytest.fixture(scope="module")
def torch_models(request: pytest.FixtureRequest, version: ModelVersion) -> LoadedModels:
    models = load_models(request.getfixturevalue(FIXTURES[version.name][0]))
    assert models.version == version
    return models


@pytest.fixture(scope="module")
def specs(version: ModelVersion) -> dict[str, contract.GraphSpec]:
    return {spec.name: spec for spec in contract.graphs(version)}


def session(graphs: Path, spec: contract.GraphSpec) -> GraphSession:
    return GraphSession(
        spec, graphs / spec.filename, options=SessionOptions(providers=("CPUExecutionProvider",))
    )


def test_every_graph_has_its_config_json(graphs_dir: Path, version: ModelVersion) -> None:
    import json

    for spec in contract.graphs(version):
        config = json.loads((graphs_dir / spec.config_filename).read_text())
        assert config["graph"] == spec.name
        assert config["model_version"] == version.name
        assert config["renderer"]["image_size"] == version.source_size
        assert config["inputs"] == {
            t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in spec.inputs
        }
        assert config["opset"] == contract.OPSET
        assert config["exporter_version"] == contract.EXPORTER_VERSION
        assert config["renderer"]["feature_dims"] == [32, 64, 128, 256, 512, 512]
        assert config["generator"]["depth"] == 8


def test_audio_encoder(graphs_dir: Path, golden_g: dict[str, np.ndarray]) -> None:
    s = session(graphs_dir, contract.AUDIO_ENCODER)
    audio = golden_g["audio_normalized"][None]  # (1, 48000) = 75 frames exactly
    got = s.run({"audio": audio})["features"]
    assert got.shape == (1, 75, 768)
    assert rel_err(got, golden_g["audio_features"]) <= 1e-4
    # Batch 2 and another length: two different windows of 40 frames each.
    batch = np.stack([audio[0, :25600], audio[0, 6400:32000]])
    got2 = s.run({"audio": batch})["features"]
    assert got2.shape == (2, 40, 768)
    for i in range(2):
        alone = s.run({"audio": batch[i : i + 1]})["features"]
        assert rel_err(got2[i : i + 1], alone) <= 1e-5


def test_conditioner(
    graphs_dir: Path, golden_g: dict[str, np.ndarray], torch_models: LoadedModels
) -> None:
    s = session(graphs_dir, contract.CONDITIONER)
    feats = golden_g["audio_features"]
    inputs = {
        "audio_features": np.concatenate([feats, feats[:, ::-1]]),
        "gaze": np.stack([golden_g["gaze"], golden_g["gaze"][::-1]]),
        "pose": np.stack([golden_g["pose"], golden_g["pose"][::-1]]),
        "cam": np.stack([golden_g["cam"], golden_g["cam"][::-1]]),
    }
    got = s.run(inputs)
    g = torch_models.generator
    with torch.no_grad():
        ref = {
            "audio_cond": g.audio_projection(torch.from_numpy(inputs["audio_features"].copy())),
            "gaze_cond": g.gaze_projection(torch.from_numpy(inputs["gaze"].copy())),
            "pose_cond": g.pose_projection(torch.from_numpy(inputs["pose"].copy())),
            "cam_cond": g.cam_projection(torch.from_numpy(inputs["cam"].copy())),
        }
    for name, value in ref.items():
        assert got[name].shape == (2, 75, 32)
        assert rel_err(got[name], value.numpy()) <= 1e-5, name


def _step_inputs(g: dict[str, np.ndarray], cfg: float) -> dict[str, np.ndarray]:
    return {
        "t": g["step_t"],
        "x": g["step_x"],
        "prev_x": g["step_prev_x"],
        "ref_x": g["step_ref_x"],
        "audio_cond": g["step_a"],
        "prev_audio_cond": g["step_prev_a"],
        "gaze_cond": g["step_gaze"],
        "prev_gaze_cond": g["step_prev_gaze"],
        "pose_cond": g["step_pose"],
        "prev_pose_cond": g["step_prev_pose"],
        "cam_cond": g["step_cam"],
        "prev_cam_cond": g["step_prev_cam"],
        "cfg_scale": np.array([cfg], dtype=np.float32),
    }


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_velocity_matches_golden(
    graphs_dir: Path, golden_g: dict[str, np.ndarray], cfg: float
) -> None:
    s = session(graphs_dir, contract.VELOCITY)
    got = s.run(_step_inputs(golden_g, cfg))["velocity"]
    ref = golden_g[f"step_velocity_cfg{int(cfg)}"][:, contract.PREV_FRAMES :]
    assert got.shape == (1, 50, 32)
    assert rel_err(got, ref) <= 1e-4


def test_velocity_batch_two(graphs_dir: Path, golden_g: dict[str, np.ndarray]) -> None:
    s = session(graphs_dir, contract.VELOCITY)
    one = _step_inputs(golden_g, 3.0)
    other = {k: (v if k == "cfg_scale" else v[..., ::-1].copy()) for k, v in one.items()}
    other["t"] = np.array([0.3], dtype=np.float32)
    both = {k: (one[k] if k == "cfg_scale" else np.concatenate([one[k], other[k]])) for k in one}
    got = s.run(both)["velocity"]
    assert rel_err(got[:1], s.run(one)["velocity"]) <= 1e-5
    assert rel_err(got[1:], s.run(other)["velocity"]) <= 1e-5


def test_avatar_encoder(
    graphs_dir: Path,
    golden_r: dict[str, np.ndarray],
    torch_models: LoadedModels,
    specs: dict[str, contract.GraphSpec],
) -> None:
    s = session(graphs_dir, specs["avatar_encoder"])
    got = s.run({"source": golden_r["source"]})
    assert rel_err(got["id_latent"], golden_r["id_latent"]) <= 1e-4
    assert rel_err(got["source_motion"], golden_r["source_motion"]) <= 1e-4
    r = torch_models.renderer
    with torch.no_grad():
        named = r.precompute_source(r.encode_source(torch.from_numpy(golden_r["source"]))).named()
    for spec in contract.AVATAR_TENSORS:
        assert got[spec.name].shape == spec.shape, spec.name
        assert rel_err(got[spec.name], named[spec.name].numpy()) <= 1e-4, spec.name


@pytest.fixture(scope="module")
def avatar(
    graphs_dir: Path, golden_r: dict[str, np.ndarray], specs: dict[str, contract.GraphSpec]
) -> dict[str, np.ndarray]:
    return session(graphs_dir, specs["avatar_encoder"]).run({"source": golden_r["source"]})


def test_renderer_batch_two_matches_golden_frames(
    graphs_dir: Path, golden_r: dict[str, np.ndarray], avatar: dict[str, np.ndarray]
) -> None:
    s = session(graphs_dir, contract.RENDERER)
    feeds = {t.name: avatar[t.name] for t in contract.AVATAR_TENSORS}
    got = s.run({"motion": golden_r["motion_latents"], **feeds})["frames"]
    assert got.shape == (2, 3, 512, 512)
    assert_frames_close(got, golden_r["frames"])


def test_renderer_batch_one_matches_golden_forward(
    graphs_dir: Path, golden_r: dict[str, np.ndarray], avatar: dict[str, np.ndarray]
) -> None:
    s = session(graphs_dir, contract.RENDERER)
    feeds = {t.name: avatar[t.name] for t in contract.AVATAR_TENSORS}
    got = s.run({"motion": golden_r["driving_motion"], **feeds})["frames"]
    assert got.shape == (1, 3, 512, 512)
    assert_frames_close(got, golden_r["forward_frame"])


def test_motion_encoder(
    graphs_dir: Path, golden_r: dict[str, np.ndarray], specs: dict[str, contract.GraphSpec]
) -> None:
    s = session(graphs_dir, specs["motion_encoder"])
    one = s.run({"image": golden_r["driving"]})["motion"]
    assert rel_err(one, golden_r["driving_motion"]) <= 1e-4
    both = s.run({"image": np.concatenate([golden_r["driving"], golden_r["source"]])})["motion"]
    assert rel_err(both[:1], golden_r["driving_motion"]) <= 1e-4
    assert rel_err(both[1:], golden_r["source_motion"]) <= 1e-4
