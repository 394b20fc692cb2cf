"""The motion generator port reproduces the reference's golden velocities and samples, for every
model version (v1: tests/data/golden, v2: tests/data/golden/v2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.audio_encoder import AudioEncoder, audio_encoder_state_dict, pad_audio
from models.generator import FMGenerator, GeneratorConfig
from models.generator.fmt import rope_inv_freq
from models.generator.generator import align_sequence, fixed_chunk_noise
from models.recipe import Manifest, golden_version_dir, read_manifest, recipe_state_dict
from runtime.model.versions import V1, V2, VERSIONS, ModelVersion
from tests.support.golden import LATENT_REL_TOL as VELOCITY_TOL
from tests.support.golden import SAMPLER_REL_TOL as SAMPLER_TOL
from tests.support.golden import rel_err

STEP_KEYS = (
    "x", "prev_x", "ref_x", "a", "prev_a", "gaze", "prev_gaze",
    "pose", "prev_pose", "cam", "prev_cam",
)  # fmt: skip


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def version(request: pytest.FixtureRequest) -> ModelVersion:
    return VERSIONS[request.param]


@pytest.fixture(scope="module")
def golden(golden_dir: Path, version: ModelVersion) -> dict[str, np.ndarray]:
    with np.load(golden_version_dir(golden_dir, version) / "generator_golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def manifest(golden_dir: Path, version: ModelVersion) -> Manifest:
    return read_manifest(golden_version_dir(golden_dir, version) / "generator_manifest.json")


@pytest.fixture(scope="module")
def generator(manifest: Manifest, version: ModelVersion) -> FMGenerator:
    model = FMGenerator(GeneratorConfig.for_version(version)).eval()
    state = model.state_dict()
    state.update(recipe_state_dict(manifest))
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def step_inputs(golden: dict[str, np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(golden[f"step_{k}"]) for k in STEP_KEYS]


def _t(golden: dict[str, np.ndarray], key: str) -> torch.Tensor:
    return torch.from_numpy(golden[key])


# ---- structure ---------------------------------------------------------------------------


def test_config_defaults_and_json_roundtrip() -> None:
    cfg = GeneratorConfig()
    assert (cfg.clip_frames, cfg.num_prev_frames, cfg.total_frames) == (50, 10, 60)
    assert (cfg.hidden_size, cfg.depth, cfg.num_heads, cfg.mlp_ratio) == (512, 8, 8, 4.0)
    assert (cfg.motion_dim, cfg.condition_dim, cfg.attention_window) == (32, 32, 5)
    assert (cfg.fps, cfg.sampling_rate, cfg.samples_per_frame) == (25.0, 16_000, 640)
    assert (cfg.ode_method, cfg.nfe, cfg.a_cfg_scale) == ("euler", 10, 3.0)
    assert cfg == GeneratorConfig.for_version(V1)
    assert GeneratorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    v2 = GeneratorConfig.for_version(V2)
    assert (v2.position_scheme, v2.rope_base, v2.a_cfg_scale) == ("rope", 10_000.0, 2.0)
    assert GeneratorConfig.from_dict(json.loads(json.dumps(v2.to_dict()))) == v2
    with pytest.raises(ValueError):
        GeneratorConfig.from_dict({"bogus": 1})


COMPUTED = {"v1": {"fmt.pos_embed", "fmt.alignment_mask"}, "v2": {"fmt.rotary_emb.inv_freq"}}


def test_state_dict_matches_manifest(manifest: Manifest, version: ModelVersion) -> None:
    expected = {e.key: e.shape for e in manifest.entries}
    model = FMGenerator(GeneratorConfig.for_version(version))
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert actual == expected
    assert list(model.state_dict()) == [e.key for e in manifest.entries]
    assert set(manifest.computed_keys) == COMPUTED[version.name]


def test_computed_buffers_match_straightforward_reconstruction(
    generator: FMGenerator, version: ModelVersion
) -> None:
    if version.position_scheme == "rope":
        expected = torch.tensor([1.0 / 10000 ** (2 * i / 64) for i in range(32)])
        torch.testing.assert_close(generator.fmt.rotary_emb.inv_freq, expected)
        assert torch.equal(generator.fmt.rotary_emb.inv_freq, rope_inv_freq(64, 10_000.0))
        return
    frames, dim, window = 60, 512, 5
    table = torch.tensor(
        [[p / (10000 ** (2 * (j // 2) / dim)) for j in range(dim)] for p in range(frames)],
        dtype=torch.float32,
    )
    table[:, 0::2] = torch.sin(table[:, 0::2])
    table[:, 1::2] = torch.cos(table[:, 1::2])
    assert torch.equal(generator.fmt.pos_embed, table[None])

    mask = torch.ones(frames, frames)
    for i in range(frames):
        mask[i, max(0, i - window) : i + window + 1] = 0
    assert generator.fmt.alignment_mask.dtype == torch.bool
    assert torch.equal(generator.fmt.alignment_mask, mask == 1)


# ---- one velocity evaluation -------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 3])
def test_velocity_matches_golden(
    generator: FMGenerator,
    golden: dict[str, np.ndarray],
    step_inputs: list[torch.Tensor],
    scale: int,
) -> None:
    t = _t(golden, "step_t")
    with torch.no_grad():
        window = generator.velocity_window(t, *step_inputs, float(scale))
        current = generator.velocity(t, *step_inputs, torch.tensor([float(scale)]))
    assert rel_err(window, golden[f"step_velocity_cfg{scale}"]) <= VELOCITY_TOL
    torch.testing.assert_close(current, window[:, 10:], rtol=1e-5, atol=1e-5)


def test_cfg_scale_changes_velocity(
    generator: FMGenerator, golden: dict[str, np.ndarray], step_inputs: list[torch.Tensor]
) -> None:
    t = _t(golden, "step_t")
    with torch.no_grad():
        v1 = generator.velocity(t, *step_inputs, 1.0)
        v3 = generator.velocity(t, *step_inputs, 3.0)
        v2 = generator.velocity(t, *step_inputs, 2.0)
    assert rel_err(v3, v1.numpy()) > 1e-2
    # The guidance is affine in the scale.
    torch.testing.assert_close(v2, (v1 + v3) / 2, rtol=1e-4, atol=1e-4)


def test_rope_attends_beyond_the_v1_band(
    generator: FMGenerator,
    golden: dict[str, np.ndarray],
    step_inputs: list[torch.Tensor],
    version: ModelVersion,
) -> None:
    """v1 frames see 5 neighbours each side; v2 attention is full, so changing the last frame
    moves the velocity of the first."""
    t = _t(golden, "step_t")
    changed = [x.clone() for x in step_inputs]
    changed[0][:, -1] += 1.0  # x: the last current frame
    with torch.no_grad():
        before = generator.velocity_window(t, *step_inputs, 1.0)
        after = generator.velocity_window(t, *changed, 1.0)
    moved = float((after[:, 0] - before[:, 0]).abs().max())
    if version.position_scheme == "rope":
        assert moved > 1e-4
    else:
        assert moved == 0.0


def test_velocity_batch_two_equals_two_batch_one_calls(
    generator: FMGenerator, golden: dict[str, np.ndarray], step_inputs: list[torch.Tensor]
) -> None:
    g = torch.Generator().manual_seed(7)
    other = [torch.randn(x.shape, generator=g) for x in step_inputs]
    t1, t2 = _t(golden, "step_t"), torch.tensor([0.7])
    with torch.no_grad():
        both = generator.velocity(
            torch.cat([t1, t2]),
            *[torch.cat([a, b]) for a, b in zip(step_inputs, other, strict=True)],
            3.0,
        )
        one = generator.velocity(t1, *step_inputs, 3.0)
        two = generator.velocity(t2, *other, 3.0)
    torch.testing.assert_close(both[:1], one, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both[1:], two, rtol=1e-4, atol=1e-4)


# ---- conditions --------------------------------------------------------------------------


def test_align_sequence_crops_and_zero_pads() -> None:
    raw = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    assert torch.equal(align_sequence(raw, 2), raw[:2])
    assert torch.equal(align_sequence(raw, 4), raw)
    padded = align_sequence(raw, 6)
    assert padded.shape == (6, 3)
    assert torch.equal(padded[:4], raw)
    assert torch.all(padded[4:] == 0)


def test_missing_conditions_are_zero_embeddings(generator: FMGenerator) -> None:
    feats = torch.randn(2, 30, 768, generator=torch.Generator().manual_seed(0))
    pose = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        conds = generator.project_conditions(feats, pose=pose)
    assert all(c.shape == (2, 30, 32) for c in conds)
    assert torch.all(conds.gaze == 0)
    assert torch.all(conds.cam == 0)
    # Padded raw rows are projected (the projection of zeros is not zero).
    assert not torch.all(conds.pose[:, 20:] == 0)
    torch.testing.assert_close(conds.pose[0], conds.pose[1])


# ---- sampler -----------------------------------------------------------------------------


def test_sample_with_conditions_matches_golden_end_to_end(
    generator: FMGenerator, golden: dict[str, np.ndarray], golden_dir: Path, version: ModelVersion
) -> None:
    """Normalised audio -> audio encoder -> sampler (CFG 3, 10 evaluations, seed 25)."""
    encoder = AudioEncoder().eval()
    manifests = golden_version_dir(golden_dir, version)
    wav2vec2 = recipe_state_dict(read_manifest(manifests / "wav2vec2_manifest.json"))
    encoder.load_state_dict(audio_encoder_state_dict(wav2vec2), strict=True)
    with torch.no_grad():
        feats = encoder(pad_audio(_t(golden, "audio_normalized")[None], 75))
    out = generator.sample(
        feats,
        _t(golden, "ref_motion"),
        gaze=_t(golden, "gaze"),
        pose=_t(golden, "pose"),
        cam=_t(golden, "cam"),
        cfg_scale=3.0,
        nfe=10,
        seed=25,
    )
    assert rel_err(out, golden["sample_cfg3_nfe10_seed25"]) <= SAMPLER_TOL


def test_sample_without_conditions_matches_golden(
    generator: FMGenerator, golden: dict[str, np.ndarray]
) -> None:
    out = generator.sample(
        _t(golden, "audio_features"), _t(golden, "ref_motion"), cfg_scale=2.0, nfe=5, seed=3
    )
    assert rel_err(out, golden["sample_nocond_cfg2_nfe5_seed3"]) <= SAMPLER_TOL


def test_fixed_noise_is_the_golden_draw(golden: dict[str, np.ndarray]) -> None:
    assert np.array_equal(fixed_chunk_noise(25, 1, 50, 32).numpy(), golden["noise_seed25"])


def test_injected_noise_reproduces_seeded_sampling(
    generator: FMGenerator, golden: dict[str, np.ndarray]
) -> None:
    feats, ref = _t(golden, "audio_features"), _t(golden, "ref_motion")
    seeded = generator.sample(feats, ref, cfg_scale=2.0, nfe=3, seed=3)
    noise = torch.stack([fixed_chunk_noise(3, 1, 50, 32)] * 2)  # (chunks, B, L, M)
    injected = generator.sample(feats, ref, cfg_scale=2.0, nfe=3, noise=noise)
    assert torch.equal(seeded, injected)
    noise[1] = fixed_chunk_noise(4, 1, 50, 32)
    changed = generator.sample(feats, ref, cfg_scale=2.0, nfe=3, noise=noise)
    assert torch.equal(changed[:, :50], seeded[:, :50])
    assert not torch.allclose(changed[:, 50:], seeded[:, 50:])
    with pytest.raises(ValueError):
        generator.sample(feats, ref, nfe=3, noise=noise[:1])


def test_short_audio_is_one_padded_chunk(generator: FMGenerator) -> None:
    feats = torch.randn(1, 12, 768, generator=torch.Generator().manual_seed(5))
    ref = torch.zeros(1, 32)
    out = generator.sample(feats, ref, nfe=2, seed=0)
    assert out.shape == (1, 12, 32)
    assert torch.isfinite(out).all()
