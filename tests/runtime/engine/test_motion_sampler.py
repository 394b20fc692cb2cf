"""The shared numpy sampler follows the reference `FMGenerator.sample` exactly.

Without exported graphs the velocity and conditioner are pure-numpy fakes with known math; an
independent transliteration of the reference loop (below, torch for its linspace) must agree
to float rounding. With recipe-weight graphs, the golden samples are reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine import motion_sampler as ms
from runtime.model.contract import CLIP_FRAMES, COND_DIM, MOTION_DIM, PREV_FRAMES

RNG = np.random.default_rng(7)
W_AUDIO = RNG.standard_normal((768, COND_DIM)).astype(np.float32) * 0.05
W_GAZE = RNG.standard_normal((2, COND_DIM)).astype(np.float32)
W_POSE = RNG.standard_normal((3, COND_DIM)).astype(np.float32)
W_CAM = RNG.standard_normal((3, COND_DIM)).astype(np.float32)
BIAS = 0.3  # projections of zeros are not zeros, as with the real Linear+LayerNorm+SiLU


def fake_conditioner(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "audio_cond": np.tanh(feeds["audio_features"] @ W_AUDIO + BIAS),
        "gaze_cond": np.tanh(feeds["gaze"] @ W_GAZE + BIAS),
        "pose_cond": np.tanh(feeds["pose"] @ W_POSE + BIAS),
        "cam_cond": np.tanh(feeds["cam"] @ W_CAM + BIAS),
    }


CALLS: list[dict[str, np.ndarray]] = []


def fake_velocity(feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """Depends on every input, so a wrong context, condition, time or scale shows."""
    CALLS.append(dict(feeds))
    t = feeds["t"][:, None, None]
    prev = (
        feeds["prev_x"].mean(1, keepdims=True)
        + 0.5 * feeds["prev_audio_cond"].mean(1, keepdims=True)
        + 0.25 * feeds["prev_gaze_cond"].mean(1, keepdims=True)
        + 0.125 * feeds["prev_pose_cond"].mean(1, keepdims=True)
        + 0.0625 * feeds["prev_cam_cond"].mean(1, keepdims=True)
    )
    cond = 0.5 * feeds["gaze_cond"] + 0.25 * feeds["pose_cond"] + 0.125 * feeds["cam_cond"]
    cfg = feeds["cfg_scale"][0]
    return (
        -(1.0 + t) * feeds["x"]
        + feeds["ref_x"][:, None, :]
        + cfg * feeds["audio_cond"]
        + cond
        + prev
        + np.sin(3.0 * t)
    ).astype(np.float32)


def reference_sample(
    audio_features: np.ndarray,
    ref_x: np.ndarray,
    gaze: np.ndarray | None,
    pose: np.ndarray | None,
    cam: np.ndarray | None,
    cfg: float,
    nfe: int,
    noise: np.ndarray,
) -> np.ndarray:
    """FMGenerator.sample, transliterated with batch 1 (independent of the runtime code)."""
    T = audio_features.shape[0]
    zeros = np.zeros((1, T, COND_DIM), np.float32)

    def align(x: np.ndarray | None, dim: int) -> np.ndarray:
        if x is None:
            return np.zeros((T, dim), np.float32)
        return np.concatenate([x, np.zeros((max(0, T - len(x)), dim), np.float32)])[:T]

    proj = fake_conditioner(
        {
            "audio_features": audio_features[None],
            "gaze": align(gaze, 2)[None],
            "pose": align(pose, 3)[None],
            "cam": align(cam, 3)[None],
        }
    )
    a = proj["audio_cond"]
    g = proj["gaze_cond"] if gaze is not None else zeros
    p = proj["pose_cond"] if pose is not None else zeros
    c = proj["cam_cond"] if cam is not None else zeros
    steps = torch.linspace(0, 1, nfe).numpy()
    out = []
    for k in range(math.ceil(T / CLIP_FRAMES)):
        if k == 0:
            px = pa = pg = pp = pc = np.zeros((1, PREV_FRAMES, 32), np.float32)
        else:
            px, pa, pg, pp, pc = (v[:, -PREV_FRAMES:] for v in (s_t, a_t, g_t, p_t, c_t))  # noqa: F821
        sl = slice(k * CLIP_FRAMES, (k + 1) * CLIP_FRAMES)
        a_t, g_t, p_t, c_t = a[:, sl], g[:, sl], p[:, sl], c[:, sl]
        n = a_t.shape[1]
        if n < CLIP_FRAMES:
            a_t, g_t, p_t, c_t = (
                np.concatenate([v, np.repeat(v[:, -1:], CLIP_FRAMES - n, axis=1)], axis=1)
                for v in (a_t, g_t, p_t, c_t)
            )
        y = noise.copy()
        for i in range(nfe - 1):
            feeds = {
                "t": np.array([steps[i]], np.float32),
                "x": y,
                "prev_x": px,
                "ref_x": ref_x,
                "audio_cond": a_t,
                "prev_audio_cond": pa,
                "gaze_cond": g_t,
                "prev_gaze_cond": pg,
                "pose_cond": p_t,
                "prev_pose_cond": pp,
                "cam_cond": c_t,
                "prev_cam_cond": pc,
                "cfg_scale": np.array([cfg], np.float32),
            }
            y = y + (steps[i + 1] - steps[i]) * fake_velocity(feeds)
        s_t = y
        out.append(s_t)
    return np.concatenate(out, axis=1)[0, :T]


def test_time_grid_matches_torch_linspace() -> None:
    for nfe in (2, 3, 5, 10, 11, 25, 50):
        np.testing.assert_array_equal(ms.time_grid(nfe), torch.linspace(0, 1, nfe).numpy())
    with pytest.raises(ValueError):
        ms.time_grid(1)


@pytest.mark.parametrize("shape", [(1, 50, 32), (16,), (3, 7), (2, 1000), (1, 10, 33)])
@pytest.mark.parametrize("seed", [0, 3, 25, 42, 123456])
def test_torch_compatible_randn(shape: tuple[int, ...], seed: int) -> None:
    want = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).numpy()
    got = ms.torch_compatible_randn(seed, shape)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_fixed_noise_is_the_golden_seed25_noise(golden_dir: Path) -> None:
    golden = np.load(golden_dir / "generator_golden.npz")
    noise = ms.fixed_noise(25)
    np.testing.assert_allclose(noise(0), golden["noise_seed25"][0], atol=2e-6)
    np.testing.assert_array_equal(noise(1), noise(0))  # the same draw for every chunk


@pytest.mark.parametrize(
    ("frames", "with_conditions", "cfg", "nfe"),
    [
        (75, True, 3.0, 10),
        (75, False, 2.0, 5),
        (50, True, 1.0, 4),
        (17, True, 3.0, 3),
        (130, False, 1.5, 6),
        (100, True, 2.5, 2),
    ],
)
def test_sampler_matches_reference_loop(
    frames: int, with_conditions: bool, cfg: float, nfe: int
) -> None:
    rng = np.random.default_rng(frames)
    features = rng.standard_normal((frames, 768)).astype(np.float32)
    ref_x = rng.standard_normal((1, MOTION_DIM)).astype(np.float32)
    # Conditions shorter and longer than the clip exercise crop and zero-padding.
    gaze = rng.standard_normal((frames - 3, 2)).astype(np.float32) if with_conditions else None
    pose = rng.standard_normal((frames + 4, 3)).astype(np.float32) if with_conditions else None
    cam = rng.standard_normal((frames, 3)).astype(np.float32) if with_conditions else None
    noise = ms.torch_compatible_randn(frames, (1, CLIP_FRAMES, MOTION_DIM))
    want = reference_sample(features, ref_x, gaze, pose, cam, cfg, nfe, noise)
    CALLS.clear()
    got = ms.sample_motion(
        fake_velocity,
        fake_conditioner,
        audio_features=features,
        ref_motion=ref_x[0],
        raw_conditions=ms.RawConditions(gaze=gaze, pose=pose, cam=cam),
        cfg_scale=cfg,
        nfe=nfe,
        noise=ms.constant_noise(noise[0]),
    )
    assert got.shape == (frames, MOTION_DIM)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(CALLS) == math.ceil(frames / CLIP_FRAMES) * (nfe - 1)
    first = CALLS[0]
    assert not first["prev_x"].any() and not first["prev_audio_cond"].any()
    for name, value in first.items():
        assert value.dtype == np.float32, name
        assert value.shape[0] == 1, name


def test_natural_condition_is_zero_not_projected_zero() -> None:
    features = np.ones((20, 768), np.float32)
    natural = ms.project_conditions(fake_conditioner, features, ms.RawConditions())
    assert not natural.gaze.any() and not natural.pose.any() and not natural.cam.any()
    zero_pose = ms.project_conditions(
        fake_conditioner, features, ms.RawConditions(pose=np.zeros((20, 3), np.float32))
    )
    assert np.allclose(zero_pose.pose, np.tanh(BIAS))


def test_context_advances_over_short_hops() -> None:
    ctx = ms.ChunkContext.zeros()
    motion = np.arange(5 * 32, dtype=np.float32).reshape(5, 32)
    conds = ms.ProjectedConditions.zeros(5)._map(lambda a: a + 1)
    ctx = ctx.advanced(motion, conds)
    assert not ctx.motion[:5].any() and np.array_equal(ctx.motion[5:], motion)
    assert not ctx.conditions.audio[:5].any() and (ctx.conditions.audio[5:] == 1).all()
    ctx = ctx.advanced(motion + 1000, conds)
    assert np.array_equal(ctx.motion, np.concatenate([motion, motion + 1000]))


def test_padding_repeats_the_last_frame() -> None:
    c = ms.ProjectedConditions.zeros(3)._map(lambda a: a + np.arange(3, dtype=np.float32)[:, None])
    padded = c.padded_to(6)
    assert padded.frames == 6 and (padded.audio[:, 0] == [0, 1, 2, 2, 2, 2]).all()


@pytest.mark.slow
def test_golden_samples_with_recipe_graphs(golden_dir: Path, recipe_graphs: Path) -> None:
    """Full-size recipe-weight graphs (exported by the `recipe_graphs` fixture)."""
    from runtime.engine.features import encoder_from_session, utterance_features
    from runtime.model.execution.model_set import open_model_set
    from runtime.model.execution.sessions import SessionOptions

    models = open_model_set(
        recipe_graphs,
        options=SessionOptions(providers=("CPUExecutionProvider",)),
        names=("audio_encoder", "conditioner", "velocity"),
    )
    g = np.load(golden_dir / "generator_golden.npz")
    feats = utterance_features(encoder_from_session(models["audio_encoder"]), g["audio_16k"])
    rel = np.linalg.norm(feats - g["audio_features"][0]) / np.linalg.norm(g["audio_features"])
    assert rel <= 1e-4
    velocity = ms.velocity_from_session(models["velocity"])
    conditioner = ms.conditioner_from_session(models["conditioner"])
    for key, raw, cfg, nfe, seed in (
        (
            "sample_cfg3_nfe10_seed25",
            ms.RawConditions(gaze=g["gaze"], pose=g["pose"], cam=g["cam"]),
            3.0,
            10,
            25,
        ),
        ("sample_nocond_cfg2_nfe5_seed3", ms.RawConditions(), 2.0, 5, 3),
    ):
        got = ms.sample_motion(
            velocity,
            conditioner,
            audio_features=feats,
            ref_motion=g["ref_motion"][0],
            raw_conditions=raw,
            cfg_scale=cfg,
            nfe=nfe,
            noise=ms.fixed_noise(seed),
        )
        want = g[key][0]
        assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-3, key
