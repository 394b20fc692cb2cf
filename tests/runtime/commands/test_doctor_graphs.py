"""`imtalker-cam doctor --graphs [DIR]`: text and JSON on the stub graphs, and the refusal when
there is nothing to report on."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from runtime.commands import cli
from tests.support.stub_graphs import write_stub_graphs


def test_json_lists_every_graph_and_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_stub_graphs(tmp_path / "graphs")
    (folder / "broken.onnx").write_bytes(b"\x0a\x02hi")
    assert cli.main(["doctor", "--graphs", str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["folder"] == str(folder)
    names = [g["graph"] for g in doc["graphs"]]
    assert names == sorted(p.name for p in folder.glob("*.onnx"))
    broken = next(g for g in doc["graphs"] if g["graph"] == "broken.onnx")
    assert "error" in broken
    velocity = next(g for g in doc["graphs"] if g["graph"] == "velocity.onnx")
    assert [v["backend"] for v in velocity["backends"]] == [
        "CoreML ML Program",
        "DirectML",
        "OpenVINO GPU",
    ]
    assert all(v["partitions"] == 1 and v["unsupported"] == {} for v in velocity["backends"])


def test_text_names_the_fallbacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "graphs"
    folder.mkdir()
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("TopK", ["a", "k"], ["top", "index"]),
            helper.make_node("Relu", ["top"], ["y"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    onnx.save(helper.make_model(graph), str(folder / "tiny.onnx"))
    assert cli.main(["doctor", "--graphs", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "tiny.onnx: 3 nodes, 0 folded as constants" in out
    assert "CoreML ML Program: 2 partition(s); falls back: TopK x1" in out
    assert "DirectML: 1 partition(s); all ops supported" in out


def test_no_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--graphs", str(tmp_path / "absent")]) == 1
    assert "no graph folder" in capsys.readouterr().err


def test_default_is_the_installed_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["doctor", "--graphs"]) == 1
    assert "not converted yet" in capsys.readouterr().err
