"""The int8 renderer (runtime.model.compile.quantize, its NNCF child, and the calibration set of
runtime.engine.calibration) on small graphs: the stub graphs with a renderer of a few Conv and
MatMul layers (tests/support/stub_graphs.conv_renderer) and the app's own calibration data.
One quantization with the default settings (the one the OpenVINO session finds) serves most
tests; one more runs with a tolerance no int8 layer meets."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.commands.bench import int8_absent, trial_choices
from runtime.engine.calibration import calibration_set, ensure_int8
from runtime.model import contract as C
from runtime.model.compile import quantize
from runtime.model.compile.quantize import (
    MOTION_STAGE,
    CalibrationSet,
    Int8Damaged,
    Int8Missing,
    QuantizeSettings,
    build_int8,
    check_int8,
    default_recipe,
    find_int8,
    int8_key,
    read_record,
)
from runtime.model.execution.backends import REFERENCE, BackendChoice, candidates, resolve
from runtime.model.execution.openvino_sessions import OpenVinoSession
from runtime.model.execution.sessions import GraphSession, SessionOptions
from tests.support import stub_graphs

pytest.importorskip("nncf", reason="the int8 extra (NNCF) is not installed")

INT8 = SessionOptions(backend="openvino", openvino_device="CPU", precision="int8")
ORT_CPU = SessionOptions(providers=("CPUExecutionProvider",))


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("int8_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMTALKER_CACHE_DIR", str(home))
        yield home


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("graphs"), velocity_gain=0.5)
    stub_graphs.write_conv_renderer(folder)
    return folder


@pytest.fixture(scope="module")
def samples(graphs: Path) -> CalibrationSet:
    return calibration_set(graphs, default_recipe())


@pytest.fixture(scope="module")
def built(graphs: Path, samples: CalibrationSet, cache_home: Path) -> Path:
    """The int8 IR of `graphs` (default recipe and settings), as bench makes it."""
    return ensure_int8(graphs)


def test_calibration_set_is_real_renderer_inputs(samples: CalibrationSet) -> None:
    recipe = default_recipe()
    portraits = len(recipe.portraits)
    assert len(samples.calibration) == portraits * recipe.calibration_frames
    assert len(samples.validation) == portraits * recipe.validation_frames
    for sample in [*samples.calibration, *samples.validation]:
        assert set(sample) == set(C.RENDERER.input_names)
        assert sample["motion"].shape == (1, C.MOTION_DIM)
    # Different portraits give different avatars; frames of one clip, different motion.
    ids = {float(s["id_latent"][0, 0]) for s in samples.calibration}
    assert len(ids) == portraits
    motions = np.stack([s["motion"][0] for s in samples.calibration])
    assert len(np.unique(motions.round(6), axis=0)) > portraits


def test_int8_renderer_runs_through_the_session_close_to_fp32(
    graphs: Path, built: Path, samples: CalibrationSet
) -> None:
    record = read_record(built.parent)
    assert record["quantized_layers"], "NNCF quantized nothing"
    # The motion stage (outside /frame_decoder/: in the real renderer the cross-attention whose
    # top-1 picks move whole patches) stays f32; the stub's motion MatMul is that stage.
    assert all(n.startswith("/frame_decoder/") for n in record["quantized_layers"])
    assert any(not n.startswith("/frame_decoder/") for n in record["f32_layers"])
    assert record["settings"]["ignored_patterns"] == [MOTION_STAGE]
    assert record["validation"]["frames_mean_abs_diff"] <= QuantizeSettings().frames_mean
    assert record["validation"]["psnr_db"] > 30
    session = OpenVinoSession(C.RENDERER, graphs / C.RENDERER.filename, options=INT8)
    assert session.quantized and session.path == built
    assert "int8" in session.summary() and session.precision == "f32"
    reference = GraphSession(C.RENDERER, graphs / C.RENDERER.filename, options=ORT_CPU)
    inputs = dict(samples.validation[0])
    got = session.run(inputs)["frames"]
    want = reference.run(inputs)["frames"]
    assert got.shape == want.shape
    assert 0 < np.abs(got - want).mean() <= 5e-3  # quantized: close, not identical
    # The other graphs of an int8 set run their fp32 ONNX files.
    velocity = OpenVinoSession(C.VELOCITY, graphs / C.VELOCITY.filename, options=INT8)
    assert not velocity.quantized and velocity.path == graphs / C.VELOCITY.filename


def test_the_key_follows_the_graph_bytes(graphs: Path, tmp_path: Path) -> None:
    other = shutil.copytree(graphs, tmp_path / "copy")
    recipe, settings = default_recipe(), QuantizeSettings()
    assert int8_key(other, recipe=recipe, settings=settings) == int8_key(
        graphs, recipe=recipe, settings=settings
    )
    stub_graphs.write_conv_renderer(other, seed=1)
    assert int8_key(other, recipe=recipe, settings=settings) != int8_key(
        graphs, recipe=recipe, settings=settings
    )
    with pytest.raises(Int8Missing, match="imtalker-cam bench --backend openvino"):
        OpenVinoSession(C.RENDERER, other / C.RENDERER.filename, options=INT8)


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_a_tampered_or_partial_ir_is_refused(graphs: Path, built: Path, damage: str) -> None:
    weights = built.with_suffix(".bin")
    original = weights.read_bytes()
    try:
        if damage == "flip":
            weights.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
        elif damage == "truncate":
            weights.write_bytes(original[: len(original) // 2])
        else:
            weights.unlink()
        assert check_int8(built.parent)
        with pytest.raises(Int8Damaged, match=r"renderer\.bin.*imtalker-cam bench"):
            OpenVinoSession(C.RENDERER, graphs / C.RENDERER.filename, options=INT8)
    finally:
        weights.write_bytes(original)
    assert check_int8(built.parent) == ()
    assert find_int8(graphs) == built


def test_a_damaged_ir_is_made_again(
    graphs: Path, built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = built.parent / "int8.json"
    original = record.read_bytes()
    monkeypatch.setattr(Path, "read_text", _partial_record(record))
    made: list[Path] = []

    def fake_build(graph_dir: Path, samples: CalibrationSet, **_: object) -> Path:
        made.append(graph_dir)
        return built.parent

    monkeypatch.setattr("runtime.engine.calibration.build_int8", fake_build)
    monkeypatch.setattr("runtime.engine.calibration.calibration_set", lambda *a, **k: None)
    with pytest.raises(Int8Damaged):  # the fake made nothing: still refused, never used
        ensure_int8(graphs)
    assert made == [graphs]
    assert record.read_bytes() == original


def _partial_record(record: Path) -> object:
    """`Path.read_text` reading `record` cut short, as a half-written record would be."""
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        text = real(self, *args, **kwargs)  # type: ignore[arg-type]
        return text[: len(text) // 2] if self == record else text

    return read_text


def test_accuracy_control_reverts_the_most_sensitive_layers(
    graphs: Path, samples: CalibrationSet, built: Path
) -> None:
    tight = QuantizeSettings(frames_mean=1e-9, frames_p99=1e-9, max_reverted=2)
    few = CalibrationSet(calibration=samples.calibration[::4], validation=samples.validation[::3])
    entry = build_int8(graphs, few, settings=tight)
    record = read_record(entry)
    assert len(record["reverted_layers"]) == 2  # the limit: no int8 layer meets 1e-9
    assert set(record["f32_layers"]) & set(record["reverted_layers"])  # a Conv or MatMul among them
    assert record["settings"]["max_reverted"] == 2
    loose = read_record(built.parent)
    assert len(loose["f32_layers"]) < len(record["f32_layers"])
    assert check_int8(entry, key=entry.name) == ()


def test_int8_is_a_candidate_only_with_nncf() -> None:
    with_int8 = candidates(openvino=True, int8=True)
    assert BackendChoice.from_label("openvino/CPU/int8") in with_int8
    assert all(c.precision != "int8" for c in candidates(openvino=True))
    assert all(c.precision != "int8" for c in candidates(openvino=False, int8=True))
    choice = resolve("auto", precision="int8", cuda_usable=False, measured=None, openvino=True)
    assert (choice.backend, choice.precision) == ("openvino", "int8")
    with pytest.raises(ValueError, match="int8 needs the OpenVINO backend"):
        SessionOptions(precision="int8")


def test_without_nncf_int8_is_neither_tried_nor_found(monkeypatch: pytest.MonkeyPatch) -> None:
    args = SimpleNamespace(backend="auto", precision="fp32")
    assert any(c.precision == "int8" for c in trial_choices(args, REFERENCE))  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "nncf", None)  # reads as not installed
    choices = trial_choices(args, REFERENCE)  # type: ignore[arg-type]
    assert all(c.precision != "int8" for c in choices)
    reason = int8_absent(choices)
    assert reason is not None and "NNCF" in reason and "imtalker-cam[int8]" in reason
    with pytest.raises(quantize.Int8Unavailable, match="NNCF"):
        OpenVinoSession(C.RENDERER, Path("nowhere") / C.RENDERER.filename, options=INT8)
