"""Model versions as data (runtime/model_versions.py) and version detection from checkpoint keys
(models/versioning.py, models/loading.py): v1 and v2 pairs load, a mixed pair and a checkpoint of
no known version are refused before any model is built, with short, actionable messages."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch

from models import loading
from models.checkpoint import ModelVersionMismatchError, UnknownModelVersionError
from models.recipe import golden_version_dir, read_manifest
from models.versioning import checkpoint_version, expected_keys, pair_version
from runtime.model import contract
from runtime.model.versions import (
    DEFAULT_VERSION,
    V1,
    V2,
    VERSIONS,
    ModelVersion,
    closest_version,
    detect_generator_version,
    detect_renderer_version,
    version,
)


def _keys(golden_dir: Path, v: ModelVersion, part: str) -> list[str]:
    manifest = read_manifest(golden_version_dir(golden_dir, v) / f"{part}_manifest.json")
    return [e.key for e in manifest.entries]


# ---- the descriptions ---------------------------------------------------------------------------


def test_versions_are_frozen_keyword_only_data() -> None:
    assert VERSIONS == {"v1": V1, "v2": V2}
    assert DEFAULT_VERSION is V2
    assert (V1.source_size, V2.source_size) == (256, 512)
    assert (V1.identity_extra_down_blocks, V2.identity_extra_down_blocks) == (0, 1)
    assert (V1.position_scheme, V2.position_scheme) == ("sinusoidal_banded", "rope")
    assert (V1.default_cfg, V2.default_cfg) == (3.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        V1.source_size = 512  # type: ignore[misc]
    with pytest.raises(TypeError):
        ModelVersion("v9", 256)  # type: ignore[misc]
    assert version("v2") is V2
    with pytest.raises(KeyError, match="v1, v2"):
        version("v3")


def test_contract_shapes_follow_the_version() -> None:
    for v in VERSIONS.values():
        side = v.source_size
        assert contract.graph("avatar_encoder", v).input("source").shape == (1, 3, side, side)
        image = contract.graph("motion_encoder", v).input("image").shape
        assert image == ("batch", 3, side, side)
        assert [g.name for g in contract.graphs(v)] == [g.name for g in contract.GRAPHS]
    # The version-less names stay v1's for the callers that predate versions.
    assert contract.graph("avatar_encoder", V1) == contract.AVATAR_ENCODER
    assert V1.source_size == contract.SOURCE_SIZE


# ---- detection on key sets ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_markers_detect_each_manifest_with_or_without_prefix(golden_dir: Path, name: str) -> None:
    v = VERSIONS[name]
    renderer, generator = _keys(golden_dir, v, "renderer"), _keys(golden_dir, v, "generator")
    assert detect_renderer_version(renderer) is v
    assert detect_renderer_version(["gen." + k for k in renderer]) is v
    assert detect_generator_version(generator) is v
    assert detect_generator_version(["model." + k for k in generator]) is v
    assert checkpoint_version("renderer", renderer) is v
    assert checkpoint_version("generator", generator) is v
    assert pair_version(renderer, generator) is v


def test_markers_of_both_or_neither_detect_nothing(golden_dir: Path) -> None:
    v1 = _keys(golden_dir, V1, "generator")
    assert detect_generator_version([*v1, "fmt.rotary_emb.inv_freq"]) is None
    assert detect_generator_version([k for k in v1 if k != "fmt.pos_embed"]) is None
    assert detect_renderer_version(["adapt.fc.weight"]) is None


def test_closest_version_counts_differing_keys(golden_dir: Path) -> None:
    v2 = _keys(golden_dir, V2, "renderer")
    expected = {name: frozenset(_keys(golden_dir, v, "renderer")) for name, v in VERSIONS.items()}
    damaged = [k for k in v2 if not k.startswith("frame_decoder.")] + ["head.weight"]
    r = closest_version(damaged, expected)
    assert r.version is V2
    assert r.unexpected == ("head.weight",)
    assert len(r.missing) == sum(k.startswith("frame_decoder.") for k in v2) > 0
    assert r.differing == len(r.missing) + 1
    assert not r.fits
    assert closest_version(v2, expected).fits


def test_expected_keys_are_each_manifest(golden_dir: Path) -> None:
    for v in VERSIONS.values():
        for part in ("renderer", "generator"):
            keys, optional = expected_keys(part, v)
            assert set(_keys(golden_dir, v, part)) <= keys, (v, part)
            assert optional < keys


# ---- refusals, end to end through load_models ---------------------------------------------------


def _tiny_checkpoint(path: Path, prefix: str, keys: list[str]) -> None:
    """A checkpoint with the right keys and 1-element tensors: version checks look at keys only,
    before any module is built or any shape compared."""
    torch.save({"state_dict": {prefix + k: torch.zeros(1) for k in keys}}, path)


@pytest.fixture
def no_model_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("a model was built before the version check")

    monkeypatch.setattr(loading, "build_renderer", refuse)
    monkeypatch.setattr(loading, "build_generator", refuse)


@pytest.mark.parametrize(("renderer", "generator"), [(V1, V2), (V2, V1)])
def test_mixed_pair_is_refused_before_any_model_is_built(
    tmp_path: Path,
    golden_dir: Path,
    renderer: ModelVersion,
    generator: ModelVersion,
    no_model_building: None,
) -> None:
    _tiny_checkpoint(tmp_path / "renderer.ckpt", "gen.", _keys(golden_dir, renderer, "renderer"))
    _tiny_checkpoint(
        tmp_path / "generator.ckpt", "model.", _keys(golden_dir, generator, "generator")
    )
    with pytest.raises(ModelVersionMismatchError) as err:
        loading.load_models(tmp_path)
    assert (err.value.renderer, err.value.generator) == (renderer, generator)
    message = str(err.value)
    assert f"renderer checkpoint is IMTalker {renderer.name}" in message
    assert f"generator checkpoint is {generator.name}" in message
    assert "re-download" in message
    assert "\n" not in message and len(message) < 250


@pytest.mark.parametrize(
    ("damage", "closest"),
    [
        # v2 with its extra block renamed: no marker fits; 31 extra keys is closer to v1 than
        # 31 missing + 31 extra to v2.
        (lambda ks: [k.replace("down_block_0.", "stem_block.") for k in ks], V1),
        # Markers of v2 but a whole submodule gone.
        (lambda ks: [k for k in ks if not k.startswith("frame_decoder.")], V2),
    ],
)
def test_checkpoint_of_no_known_version_gets_an_actionable_message(
    tmp_path: Path,
    golden_dir: Path,
    damage: object,
    closest: ModelVersion,
    no_model_building: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = damage(_keys(golden_dir, V2, "renderer"))  # type: ignore[operator]
    _tiny_checkpoint(tmp_path / "renderer.ckpt", "gen.", keys)
    _tiny_checkpoint(tmp_path / "generator.ckpt", "model.", _keys(golden_dir, V2, "generator"))
    with (
        caplog.at_level(logging.DEBUG, logger="models.versioning"),
        pytest.raises(UnknownModelVersionError) as err,
    ):
        loading.load_models(tmp_path)
    r = err.value.resemblance
    assert r.version is closest and r.differing > 0
    message = str(err.value)
    assert f"most resembles {closest.name}" in message
    assert f"{r.differing} keys differ" in message  # always many in these cases
    assert "Re-download the model" in message and "update imtalker-cam" in message
    # No key names in the message (they can run into the hundreds); they go to the debug log.
    assert "dense_feature_encoder" not in message and "frame_decoder" not in message
    assert "\n" not in message and len(message) < 300
    assert (r.missing or r.unexpected)[0] in caplog.text


# ---- real recipe checkpoints (the session fixtures the ONNX tests share) -----------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_recipe_pair_of_each_version_loads_as_that_version(
    request: pytest.FixtureRequest, name: str
) -> None:
    fixture = {"v1": "recipe_weights", "v2": "recipe_weights_v2"}[name]
    models = loading.load_models(request.getfixturevalue(fixture))
    v = VERSIONS[name]
    assert models.version is v
    assert models.renderer.config.image_size == v.source_size
    assert models.generator.config.position_scheme == v.position_scheme
    assert models.generator.config.a_cfg_scale == v.default_cfg
    has_rope = hasattr(models.generator.fmt, "rotary_emb")
    assert has_rope == (v.position_scheme == "rope")


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_writer_builds_the_computed_buffers_the_modules_build(golden_dir: Path, name: str) -> None:
    from models.recipe_checkpoints import computed_value
    from models.versioning import build_generator

    v = VERSIONS[name]
    manifest = read_manifest(golden_version_dir(golden_dir, v) / "generator_manifest.json")
    own = build_generator(v).state_dict()
    for entry in manifest.entries:
        if entry.recipe == "computed":
            assert torch.equal(computed_value(entry), own[entry.key]), entry.key
