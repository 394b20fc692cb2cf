"""The renderer port reproduces the reference IMTalker renderer under the golden recipe weights,
for every model version (v1: tests/data/golden, v2: tests/data/golden/v2).

Every array of each version's renderer_golden.npz is compared with the README tolerances;
the precomputed (per-avatar cached) render path is checked against the plain one and across
batch sizes. Frames at 512 px take seconds each on CPU, so every heavy result is computed once
per module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from models.recipe import Manifest, golden_version_dir, read_manifest, recipe_state_dict
from models.renderer import IMTRenderer, RendererConfig, SourceCache, SourceEncoding
from runtime.model import contract
from runtime.model.versions import VERSIONS, ModelVersion
from tests.support.golden import LATENT_REL_TOL, assert_frames_close, rel_err

pytestmark = pytest.mark.slow


# Module scope + params: pytest finishes one version's tests before building the next model.
@pytest.fixture(scope="module", params=sorted(VERSIONS))
def version(request: pytest.FixtureRequest) -> ModelVersion:
    return VERSIONS[request.param]


@pytest.fixture(scope="module")
def config(version: ModelVersion) -> RendererConfig:
    return RendererConfig.for_version(version)


@pytest.fixture(scope="module")
def manifest(golden_dir: Path, version: ModelVersion) -> Manifest:
    return read_manifest(golden_version_dir(golden_dir, version) / "renderer_manifest.json")


@pytest.fixture(scope="module")
def golden(golden_dir: Path, version: ModelVersion) -> dict[str, np.ndarray]:
    with np.load(golden_version_dir(golden_dir, version) / "renderer_golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def recipe(manifest: Manifest) -> dict[str, torch.Tensor]:
    return recipe_state_dict(manifest)


@pytest.fixture(scope="module")
def renderer(
    manifest: Manifest, recipe: dict[str, torch.Tensor], config: RendererConfig
) -> IMTRenderer:
    model = IMTRenderer(config)
    result = model.load_state_dict(recipe, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= set(manifest.computed_keys)
    # No parameter needs a gradient, so no call below records an autograd graph.
    return model.eval().requires_grad_(False)


def _t(golden: dict[str, np.ndarray], key: str) -> torch.Tensor:
    return torch.from_numpy(golden[key])


def _assert_latent(ours: torch.Tensor, ref: np.ndarray) -> None:
    assert tuple(ours.shape) == ref.shape
    assert rel_err(ours, ref) <= LATENT_REL_TOL


_assert_frames = assert_frames_close


def _stats(tensors: Sequence[torch.Tensor]) -> np.ndarray:
    # The golden's per-level (mean, std, sum|x|) over the whole tensor, std unbiased.
    rows = [[t.double().mean(), t.double().std(), t.double().abs().sum()] for t in tensors]
    return np.array([[float(v) for v in row] for row in rows])


@pytest.fixture(scope="module")
def source(renderer: IMTRenderer, golden: dict[str, np.ndarray]) -> SourceEncoding:
    return renderer.encode_source(_t(golden, "source"))


@pytest.fixture(scope="module")
def cache(renderer: IMTRenderer, source: SourceEncoding) -> SourceCache:
    return renderer.precompute_source(source)


@pytest.fixture(scope="module")
def frames_plain(
    renderer: IMTRenderer, source: SourceEncoding, golden: dict[str, np.ndarray]
) -> torch.Tensor:
    return renderer.render(_t(golden, "motion_latents"), source)


@pytest.fixture(scope="module")
def frames_cached(
    renderer: IMTRenderer, cache: SourceCache, golden: dict[str, np.ndarray]
) -> torch.Tensor:
    return renderer.render_precomputed(_t(golden, "motion_latents"), cache)


def test_state_dict_matches_manifest(manifest: Manifest, renderer: IMTRenderer) -> None:
    state = renderer.state_dict()
    assert list(state) == [e.key for e in manifest.entries]
    for entry in manifest.entries:
        value = state[entry.key]
        assert tuple(value.shape) == entry.shape, entry.key
        assert str(value.dtype).removeprefix("torch.") == entry.dtype.removeprefix("torch."), (
            entry.key
        )


def test_checkpoint_with_computed_buffers_loads_strictly(
    manifest: Manifest, recipe: dict[str, torch.Tensor], config: RendererConfig
) -> None:
    # A published checkpoint carries the computed buffers too; with them, loading is strict.
    model = IMTRenderer(config)
    full = dict(recipe)
    full.update({k: v for k, v in model.state_dict().items() if k in manifest.computed_keys})
    assert set(full) == {e.key for e in manifest.entries}
    model.load_state_dict(full, strict=True)


def test_inputs_have_the_version_s_source_size(
    golden: dict[str, np.ndarray], version: ModelVersion
) -> None:
    side = contract.source_size(version)
    assert golden["source"].shape == golden["driving"].shape == (1, 3, side, side)
    spec = contract.graph("avatar_encoder", version).input("source")
    assert spec.shape == golden["source"].shape


def test_identity_and_motion_latents(
    renderer: IMTRenderer, source: SourceEncoding, golden: dict[str, np.ndarray]
) -> None:
    _assert_latent(source.id_latent, golden["id_latent"])
    _assert_latent(source.motion, golden["source_motion"])
    _assert_latent(source.adapted_motion, golden["adapted_source_motion"])
    _assert_latent(renderer.encode_motion(_t(golden, "driving")), golden["driving_motion"])
    adapted = renderer.adapt_motion(_t(golden, "motion_latents"), source.id_latent)
    _assert_latent(adapted, golden["adapted_motion"])
    # The checkpoint-named submodule is the same callable.
    torch.testing.assert_close(
        renderer.adapt(_t(golden, "motion_latents"), source.id_latent), adapted
    )


def test_feature_and_motion_map_stats(
    renderer: IMTRenderer, source: SourceEncoding, golden: dict[str, np.ndarray]
) -> None:
    np.testing.assert_allclose(
        _stats(source.appearance), golden["appearance_feature_stats"], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        _stats(source.motion_maps), golden["source_motion_map_stats"], rtol=1e-4, atol=1e-6
    )
    maps = renderer.decode_motion(_t(golden, "adapted_motion"))
    np.testing.assert_allclose(_stats(maps), golden["motion_map_stats"], rtol=1e-4, atol=1e-6)


def test_render_matches_golden_frames(
    frames_plain: torch.Tensor, golden: dict[str, np.ndarray]
) -> None:
    _assert_frames(frames_plain, golden["frames"])


def test_forward_matches_golden_forward_frame(
    renderer: IMTRenderer, golden: dict[str, np.ndarray]
) -> None:
    frame, driving_motion = renderer(_t(golden, "driving"), _t(golden, "source"))
    _assert_frames(frame, golden["forward_frame"])
    _assert_latent(driving_motion, golden["driving_motion"])


def test_precomputed_path_equals_plain_path(
    frames_cached: torch.Tensor, frames_plain: torch.Tensor, golden: dict[str, np.ndarray]
) -> None:
    # Same arithmetic on the same batch-1 avatar tensors, only computed earlier.
    torch.testing.assert_close(frames_cached, frames_plain, rtol=0.0, atol=1e-6)
    _assert_frames(frames_cached, golden["frames"])


def test_precomputed_batch_one_matches_batch_two(
    renderer: IMTRenderer,
    cache: SourceCache,
    frames_cached: torch.Tensor,
    golden: dict[str, np.ndarray],
) -> None:
    motion = _t(golden, "motion_latents")
    single = renderer.render_precomputed(motion[1:], cache)
    # Across batch sizes the top-1 resampler may flip a near-tie (README), hence the
    # frame tolerance rather than equality.
    _assert_frames(single, frames_cached[1:].numpy())


def test_cache_matches_runtime_contract(cache: SourceCache, config: RendererConfig) -> None:
    named = cache.named()
    assert list(named) == [spec.name for spec in contract.AVATAR_TENSORS]
    for spec in contract.AVATAR_TENSORS:
        assert tuple(named[spec.name].shape) == spec.shape, spec.name
        assert str(named[spec.name].dtype).removeprefix("torch.") == spec.dtype
    rebuilt = SourceCache.from_named(named, config)
    assert rebuilt.named().keys() == named.keys()
    assert all(rebuilt.named()[k] is v for k, v in named.items())
