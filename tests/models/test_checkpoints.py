"""Safe, strict checkpoint loading and the recipe-checkpoint writer (models/checkpoint, models/
recipe_checkpoints): published layouts round-trip, malicious pickles never run, errors are clear.
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from models.checkpoint import (
    CheckpointError,
    CheckpointLayoutError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    InertNamespace,
    StateDictMismatchError,
    UnsafeCheckpointError,
    convert_to_safetensors,
    generator_state_dicts,
    load_strict,
    read_checkpoint,
    renderer_state_dict,
    wav2vec2_state_dict,
    wav2vec2_weights_file,
    write_safetensors,
)
from models.recipe import Manifest, read_manifest, recipe_tensor
from models.recipe_checkpoints import (
    RecipeCheckpointPaths,
    computed_value,
    picklable_as,
    write_recipe_checkpoints,
)
from tests.support.malicious_checkpoints import MarkerPayload, plant_marker, with_payload

W2V_DROPPED = ("wav2vec2.masked_spec_embed", "lm_head.weight", "lm_head.bias")


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests(golden_dir: Path) -> dict[str, Manifest]:
    return {
        name: read_manifest(golden_dir / f"{name}_manifest.json")
        for name in ("renderer", "generator", "wav2vec2")
    }


def _written(
    tmp_path_factory: pytest.TempPathFactory, golden_dir: Path, *, extras: bool
) -> Iterator[RecipeCheckpointPaths]:
    out = tmp_path_factory.mktemp("extras" if extras else "plain")
    yield write_recipe_checkpoints(out, golden_dir=golden_dir, extras=extras)
    shutil.rmtree(out)  # about 1.4 GB


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory, golden_dir: Path
) -> Iterator[RecipeCheckpointPaths]:
    yield from _written(tmp_path_factory, golden_dir, extras=False)


@pytest.fixture(scope="module")
def extras(
    tmp_path_factory: pytest.TempPathFactory, golden_dir: Path
) -> Iterator[RecipeCheckpointPaths]:
    yield from _written(tmp_path_factory, golden_dir, extras=True)


@pytest.fixture(params=["plain", "extras"])
def recipe(request: pytest.FixtureRequest) -> RecipeCheckpointPaths:
    paths: RecipeCheckpointPaths = request.getfixturevalue(request.param)
    return paths


@pytest.fixture(scope="module")
def expected(manifests: dict[str, Manifest]) -> dict[str, dict[str, torch.Tensor]]:
    """Every manifest entry's value, straight from the recipe (not from any file)."""
    return {
        name: {
            e.key: recipe_tensor(e) if e.recipe == "random" else computed_value(e)
            for e in manifest.entries
        }
        for name, manifest in manifests.items()
    }


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(actual) == list(expected)  # same keys, in manifest order
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert torch.equal(actual[key], value), key


def _assert_same_unordered(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """safetensors stores entries in its own order; state dicts do not depend on order."""
    _assert_same(dict(sorted(actual.items())), dict(sorted(expected.items())))


# ---- recipe checkpoints round-trip -------------------------------------------------------------


@pytest.mark.slow
def test_recipe_checkpoints_round_trip_every_manifest_key(
    recipe: RecipeCheckpointPaths, expected: dict[str, dict[str, torch.Tensor]]
) -> None:
    _assert_same(renderer_state_dict(recipe.renderer), expected["renderer"])

    generator = generator_state_dicts(recipe.generator)
    _assert_same(generator.model, expected["generator"])

    w2v_expected = {
        k.removeprefix("wav2vec2."): v
        for k, v in expected["wav2vec2"].items()
        if k not in W2V_DROPPED
    }
    _assert_same(wav2vec2_state_dict(recipe.wav2vec2_dir), w2v_expected)
    assert generator.audio_encoder is not None
    _assert_same(generator.audio_encoder, w2v_expected)  # the copy equals the folder


@pytest.mark.slow
def test_published_file_layouts(
    recipe: RecipeCheckpointPaths, manifests: dict[str, Manifest]
) -> None:
    renderer = read_checkpoint(recipe.renderer)
    assert isinstance(renderer, dict)
    gen_keys = [k for k in renderer["state_dict"] if k.startswith("gen.")]
    assert gen_keys == ["gen." + e.key for e in manifests["renderer"].entries]

    generator = read_checkpoint(recipe.generator)
    assert isinstance(generator, dict)
    assert (
        "model.audio_encoder.wav2vec2.encoder.pos_conv_embed.conv.weight_g"
        in (generator["state_dict"])
    )

    bin_keys = read_checkpoint(recipe.wav2vec2_dir / "pytorch_model.bin")
    assert isinstance(bin_keys, dict)
    assert list(bin_keys) == [e.key for e in manifests["wav2vec2"].entries]  # CTC names

    config = json.loads((recipe.wav2vec2_dir / "config.json").read_text())
    assert config["vocab_size"] == 32 and config["hidden_size"] == 768
    assert config["conv_kernel"] == [10, 3, 3, 3, 3, 2, 2]
    assert config["conv_stride"] == [5, 2, 2, 2, 2, 2, 2]
    assert (config["num_conv_pos_embeddings"], config["num_conv_pos_embedding_groups"]) == (128, 16)
    assert config["feat_extract_norm"] == "group" and config["do_stable_layer_norm"] is False
    for name in ("preprocessor_config.json", "feature_extractor_config.json"):
        features = json.loads((recipe.wav2vec2_dir / name).read_text())
        assert features["sampling_rate"] == 16000 and features["do_normalize"] is True


@pytest.mark.slow
def test_lightning_extras_load_through_placeholders_without_lightning(
    extras: RecipeCheckpointPaths,
) -> None:
    assert not any("lightning" in name for name in sys.modules)  # the writer cleaned up
    ckpt = read_checkpoint(extras.renderer)
    assert isinstance(ckpt, dict)
    hyper = ckpt["hyper_parameters"]
    assert type(hyper) is dict and hyper["kind"] == "renderer"
    assert isinstance(hyper["opt"], InertNamespace) and vars(hyper["opt"])["batch_size"] == 8
    assert ckpt["epoch"] == 41 and ckpt["pytorch-lightning_version"] == "2.1.3"
    assert ckpt["optimizer_states"][0]["state"][0]["exp_avg"].ndim == 4
    assert "disc.convs.0.0.weight" in ckpt["state_dict"]
    assert not any(k.startswith("disc.") for k in renderer_state_dict(extras.renderer))
    assert not any("lightning" in name for name in sys.modules)  # loading imported nothing


@pytest.mark.parametrize(
    "name",
    [
        "lightning_fabric.utilities.data.AttributeDict",
        "lightning.pytorch.utilities.parsing.AttributeDict",
    ],
)
def test_other_lightning_attribute_dict_names_are_accepted(tmp_path: Path, name: str) -> None:
    with picklable_as(name) as attribute_dict:
        torch.save(
            {"state_dict": {"gen.w": torch.ones(1)}, "hp": attribute_dict(a=1)}, tmp_path / "c"
        )
    assert not any("lightning" in m for m in sys.modules)
    ckpt = read_checkpoint(tmp_path / "c")
    assert isinstance(ckpt, dict) and type(ckpt["hp"]) is dict and ckpt["hp"] == {"a": 1}


# ---- real modules ------------------------------------------------------------------------------


def _real_module(path: str, name: str) -> nn.Module:
    module = pytest.importorskip(path, exc_type=ModuleNotFoundError)
    instance: nn.Module = getattr(module, name)()
    return instance


REAL_MODULES = [
    ("models.renderer", "IMTRenderer", "renderer"),
    ("models.generator", "FMGenerator", "generator"),
    ("models.audio_encoder", "AudioEncoder", "wav2vec2"),
]


def _real_state_dict(kind: str, paths: RecipeCheckpointPaths) -> dict[str, torch.Tensor]:
    if kind == "renderer":
        return renderer_state_dict(paths.renderer)
    if kind == "generator":
        return generator_state_dicts(paths.generator).model
    return wav2vec2_state_dict(paths.wav2vec2_dir)


@pytest.mark.slow
@pytest.mark.parametrize(("path", "name", "kind"), REAL_MODULES)
def test_real_modules_strictly_load_recipe_checkpoints(
    path: str,
    name: str,
    kind: str,
    plain: RecipeCheckpointPaths,
    manifests: dict[str, Manifest],
) -> None:
    module = _real_module(path, name)
    computed = {e.key: computed_value(e) for e in manifests[kind].entries if e.recipe == "computed"}
    own = dict(module.named_buffers())
    for key, value in computed.items():  # the writer and the port build the same buffers
        assert torch.equal(own[key].to(value.dtype), value), key

    state = _real_state_dict(kind, plain)
    load_strict(module, state)
    loaded = module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())

    # Computed buffers may be absent from a file; they then keep the module's own value.
    declared = frozenset(k for k in computed if not k.endswith("num_batches_tracked"))
    fresh = _real_module(path, name)
    load_strict(
        fresh, {k: v for k, v in state.items() if k not in computed}, computed_buffers=declared
    )
    for key, value in computed.items():
        assert torch.equal(fresh.state_dict()[key].to(value.dtype), value), key


@pytest.mark.slow
@pytest.mark.parametrize(("path", "name", "kind"), REAL_MODULES)
def test_real_modules_report_every_bad_key(
    path: str, name: str, kind: str, plain: RecipeCheckpointPaths
) -> None:
    module = _real_module(path, name)
    state = dict(_real_state_dict(kind, plain))
    weights = [k for k, v in state.items() if v.is_floating_point() and v.ndim >= 2]
    dropped, reshaped = weights[0], weights[-1]
    del state[dropped]
    state[reshaped] = torch.zeros(3, 3)
    state["not_a_layer.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError) as err:
        load_strict(module, state)
    assert err.value.missing == (dropped,)
    assert err.value.unexpected == ("not_a_layer.weight",)
    assert [m[0] for m in err.value.mismatched] == [reshaped]
    details = err.value.details
    assert dropped in details and reshaped in details and "not_a_layer.weight" in details
    # str() stays one short line however many keys are wrong (it reaches a dialog).
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


# ---- strict loading on a small module ----------------------------------------------------------


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)
        self.register_buffer("kernel", torch.full((2, 2), 0.25))  # persistent, computed
        self.register_buffer("table", torch.arange(5.0), persistent=False)


def _small_file_state() -> dict[str, torch.Tensor]:
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in Small().state_dict().items()}
    state["norm.num_batches_tracked"] = torch.tensor(123)
    return state


def test_strict_load_copies_everything_including_non_persistent_buffers() -> None:
    module, state = Small(), _small_file_state()
    state["table"] = torch.full((5,), 7.0)
    load_strict(module, state)
    for key, value in state.items():
        assert torch.equal(getattr_path(module, key), value), key


def getattr_path(module: nn.Module, dotted: str) -> torch.Tensor:
    owner, _, attr = dotted.rpartition(".")
    value = getattr(module.get_submodule(owner) if owner else module, attr)
    assert isinstance(value, torch.Tensor)
    return value


def test_strict_load_lists_all_problems_together_and_loads_nothing() -> None:
    module = Small()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    state = _small_file_state()
    del state["linear.weight"], state["norm.running_mean"]
    state["linear.bias"] = torch.zeros(5)
    state["head.weight"] = torch.zeros(2)
    state["extra"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError) as err:
        load_strict(module, state)
    assert err.value.missing == ("linear.weight", "norm.running_mean")
    assert err.value.unexpected == ("head.weight", "extra")
    assert err.value.mismatched == (("linear.bias", (5,), (4,)),)
    text = str(err.value)
    assert "2 missing, 2 unexpected, 1 mis-shaped" in text
    assert "linear.bias is (5,) in the file, (4,) in the model" in text
    assert "head.weight" not in text  # the full lists only in `details`
    assert "linear.bias (file (5,), module (4,))" in err.value.details
    assert "missing: linear.weight, norm.running_mean" in err.value.details
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items())


def test_computed_buffers_may_be_absent_but_learned_weights_may_not() -> None:
    state = _small_file_state()
    del state["kernel"], state["norm.num_batches_tracked"]
    module = Small()
    load_strict(module, state, computed_buffers=frozenset({"kernel"}))
    assert torch.equal(getattr_path(module, "kernel"), torch.full((2, 2), 0.25))
    assert torch.equal(getattr_path(module, "table"), torch.arange(5.0))

    with pytest.raises(StateDictMismatchError) as err:  # not declared -> a real omission
        load_strict(Small(), state)
    assert err.value.missing == ("kernel",)

    for bad in ("norm.running_var", "linear.weight", "nope"):
        with pytest.raises(ValueError, match=bad):
            load_strict(Small(), state, computed_buffers=frozenset({"kernel", bad}))


# ---- malicious and broken files ----------------------------------------------------------------


class _ShellPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_reduce_is_refused_by_name_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    ckpt = with_payload(tmp_path / "evil.ckpt", MarkerPayload(marker))
    name = f"{plant_marker.__module__}.{plant_marker.__name__}"
    for reader in (read_checkpoint, renderer_state_dict, generator_state_dicts):
        with pytest.raises(UnsafeCheckpointError) as err:
            reader(ckpt)
        assert err.value.globals_found == (name,)
        assert name in str(err.value)
        assert not marker.exists()

    # The file really is malicious: full unpickling (never done by our code) runs the payload.
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_os_system_payload_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    ckpt = with_payload(tmp_path / "evil.ckpt", _ShellPayload(marker))
    with pytest.raises(UnsafeCheckpointError) as err:
        renderer_state_dict(ckpt)
    assert err.value.globals_found == (f"{os.system.__module__}.system",)
    assert not marker.exists()


def test_payload_in_newer_pickle_protocol_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    ckpt = with_payload(tmp_path / "evil.ckpt", MarkerPayload(marker), protocol=4)
    with pytest.raises(CheckpointError):
        read_checkpoint(ckpt)
    assert not marker.exists()


def test_unknown_global_is_refused(tmp_path: Path) -> None:
    ckpt = with_payload(tmp_path / "odd.ckpt", fractions.Fraction(1, 3))
    with pytest.raises(UnsafeCheckpointError, match=r"fractions\.Fraction"):
        read_checkpoint(ckpt)


class _NamespaceCall:
    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (argparse.Namespace, (1,))


def test_allowlisted_name_cannot_be_abused_as_a_call(tmp_path: Path) -> None:
    # GLOBAL argparse.Namespace + REDUCE with arguments: the inert stand-in takes none.
    ckpt = with_payload(tmp_path / "abuse.ckpt", _NamespaceCall())
    with pytest.raises(CorruptCheckpointError, match="TypeError"):
        read_checkpoint(ckpt)


@pytest.mark.parametrize("keep", [0.5, 0.99, 100, 10])
def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path, keep: float) -> None:
    full = tmp_path / "full.ckpt"
    torch.save({"state_dict": {f"gen.w{i}": torch.randn(64, 64) for i in range(4)}}, full)
    data = full.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    with pytest.raises(CorruptCheckpointError, match=r"cut\.ckpt"):
        renderer_state_dict(cut)


def test_truncated_safetensors_is_a_clear_error(tmp_path: Path) -> None:
    full = tmp_path / "full.safetensors"
    safetensors.torch.save_file({"gen.w": torch.randn(64, 64)}, str(full))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(full.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError):
        renderer_state_dict(cut)


def test_other_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError):
        read_checkpoint(tmp_path / "absent.ckpt")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError for generic callers
        read_checkpoint(tmp_path)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "text.ckpt").write_text("version https://git-lfs.github.com/spec/v1\n")
    for name in ("empty.ckpt", "text.ckpt"):
        with pytest.raises(CorruptCheckpointError, match="neither a torch zip"):
            read_checkpoint(tmp_path / name)
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"a": torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CorruptCheckpointError, match="legacy"):
        read_checkpoint(legacy)


def test_unexpected_layouts(tmp_path: Path) -> None:
    def saved(obj: object) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.ckpt"
        torch.save(obj, path)
        return path

    with pytest.raises(CheckpointLayoutError, match="top level"):
        renderer_state_dict(saved([torch.ones(1)]))
    with pytest.raises(CheckpointLayoutError, match=r"no 'gen\.' weights.*disc\.w"):
        renderer_state_dict(saved({"state_dict": {"disc.w": torch.ones(1)}}))
    with pytest.raises(CheckpointLayoutError, match="should hold a tensor"):
        renderer_state_dict(saved({"state_dict": {"gen.w": "text"}}))
    with pytest.raises(CheckpointLayoutError, match=r"no 'model\.' weights"):
        generator_state_dicts(saved({"optimizer": {}, "epoch": 3}))
    with pytest.raises(CheckpointLayoutError, match="flat name -> tensor"):
        wav2vec2_state_dict(saved({"state_dict": {"wav2vec2.x": torch.ones(1)}}))
    with pytest.raises(CheckpointNotFoundError):
        wav2vec2_state_dict(tmp_path / "no_such_folder")


def test_generator_layout_variants_and_weight_norm_names(tmp_path: Path) -> None:
    w, g = torch.ones(2), torch.full((1, 1, 3), 2.0)
    audio = "model.audio_encoder.wav2vec2."
    weights = {
        "model.fmt.w": w,
        audio + "masked_spec_embed": torch.zeros(4),
        audio + "encoder.pos_conv_embed.conv.parametrizations.weight.original0": g,
    }
    for layout in ({"state_dict": weights}, {"model": weights}, {"state_dict": {"model": weights}}):
        path = tmp_path / "g.ckpt"
        torch.save(layout, path)
        result = generator_state_dicts(path)
        assert list(result.model) == ["fmt.w"]
        assert result.audio_encoder is not None
        assert list(result.audio_encoder) == ["encoder.pos_conv_embed.conv.weight_g"]


# ---- safetensors -------------------------------------------------------------------------------


@pytest.mark.slow
def test_safetensors_conversion_round_trip(extras: RecipeCheckpointPaths, tmp_path: Path) -> None:
    renderer = convert_to_safetensors(
        extras.renderer, tmp_path / "renderer.safetensors", kind="renderer"
    )
    _assert_same_unordered(renderer_state_dict(tmp_path / "renderer.safetensors"), renderer)
    flat = read_checkpoint(tmp_path / "renderer.safetensors")
    assert isinstance(flat, dict) and all(k.startswith("gen.") for k in flat)  # no disc.*

    original = generator_state_dicts(extras.generator)
    convert_to_safetensors(extras.generator, tmp_path / "generator.safetensors", kind="generator")
    converted = generator_state_dicts(tmp_path / "generator.safetensors")
    assert original.audio_encoder is not None and converted.audio_encoder is not None
    for before, after in (
        (original.model, converted.model),
        (original.audio_encoder, converted.audio_encoder),
    ):
        _assert_same_unordered(after, before)

    folder = tmp_path / "wav2vec2-base-960h"
    folder.mkdir()
    audio = convert_to_safetensors(
        extras.wav2vec2_dir, folder / "model.safetensors", kind="wav2vec2"
    )
    (folder / "pytorch_model.bin").write_bytes(b"not read: safetensors is preferred")
    assert wav2vec2_weights_file(folder) == folder / "model.safetensors"
    _assert_same_unordered(wav2vec2_state_dict(folder), audio)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "pytorch_model.bin"]

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "generator.safetensors",
        "renderer.safetensors",
        "wav2vec2-base-960h",
    ]  # no temporary files left behind


@pytest.mark.slow
def test_conversion_verifies_against_a_module_before_writing(
    plain: RecipeCheckpointPaths, tmp_path: Path
) -> None:
    dst = tmp_path / "generator.safetensors"
    with pytest.raises(StateDictMismatchError):
        convert_to_safetensors(plain.generator, dst, kind="generator", module=Small())
    assert not dst.exists()


def test_safetensors_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "w.safetensors"
    real_save = safetensors.torch.save_file
    seen: list[Path] = []

    def observing_save(
        tensors: dict[str, torch.Tensor], filename: str, metadata: object = None
    ) -> None:
        assert not dst.exists()  # the final name only ever appears complete
        assert Path(filename).parent == dst.parent  # same filesystem -> rename is atomic
        seen.append(Path(filename))
        real_save(tensors, filename, metadata=metadata)  # type: ignore[arg-type]

    monkeypatch.setattr(safetensors.torch, "save_file", observing_save)
    shared = torch.arange(6.0)
    write_safetensors({"a": shared, "b": shared, "c": shared[:3]}, dst, metadata={"k": "v"})
    assert seen and not seen[0].exists()
    assert torch.equal(safetensors.torch.load_file(str(dst))["b"], shared)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]

    def failing_save(
        tensors: dict[str, torch.Tensor], filename: str, metadata: object = None
    ) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_safetensors({"a": torch.zeros(2)}, dst)
    assert torch.equal(safetensors.torch.load_file(str(dst))["a"], shared)  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
