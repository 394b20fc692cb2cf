"""torch and onnx are the `convert` extra (issue 23, item 3): an install without them runs
compiled graphs (render, doctor) and says in one sentence what to install wherever a
conversion would start (`models convert`, the app's set-up, `serve`).

The absence is real in the child processes: tests/support/without_convert_extra is first on
their PYTHONPATH, and its sitecustomize makes every import of torch, onnx and
onnxconverter-common fail as where they were never installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import wave
from pathlib import Path

import pytest

from desktop_app.runtime_services.models import RuntimeModels
from desktop_app.services import UserError
from runtime.model.compile import cache as compiled_cache
from runtime.model.convert_extra import HINT as CONVERT_EXTRA_HINT
from runtime.model.execution import providers
from runtime.model.store.model_store import ModelStore
from tests.support.hub_server import standin_files, write_tree
from tests.support.stub_graphs import write_stub_graphs

ROOT = Path(__file__).resolve().parents[3]
BLOCKER = ROOT / "tests" / "support" / "without_convert_extra"


def _env(tmp: Path, *, blocked: bool = True) -> dict[str, str]:
    path = [str(BLOCKER), str(ROOT)] if blocked else [str(ROOT)]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "IMTALKER_DATA_DIR": str(tmp / "data"),
        "IMTALKER_CACHE_DIR": str(tmp / "cache"),
        "IMTALKER_CONFIG_DIR": str(tmp / "config"),
        "QT_QPA_PLATFORM": "offscreen",
    }


def cli(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(tmp),
    )


def _speech(src: Path, dst: Path, seconds: float) -> Path:
    with wave.open(str(src)) as w:
        params = w.getparams()
        data = w.readframes(int(params.framerate * seconds))
    with wave.open(str(dst), "wb") as out:
        out.setparams(params)
        out.writeframes(data)
    return dst


def test_the_blocker_really_hides_the_extra(tmp_path: Path) -> None:
    """The premise of every test below: in the child, torch and onnx cannot be imported (and
    onnxruntime, which runs the graphs, still can)."""
    probe = (
        "import importlib, onnxruntime\n"
        "for name in ('torch', 'onnx', 'onnxconverter_common', 'torch.nn'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        print('absent', name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=_env(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:-1] == [
        "absent torch",
        "absent onnx",
        "absent onnxconverter_common",
        "absent torch.nn",
    ]


def test_the_provider_probe_graph_is_the_onnx_one() -> None:
    """The probe graph is kept as bytes (building it needs onnx); it is the graph onnx's own
    helpers build."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert providers._one_node_model() == model.SerializeToString()


def test_render_and_doctor_run_without_torch_or_onnx(tmp_path: Path, fixtures_dir: Path) -> None:
    graphs = write_stub_graphs(tmp_path / "graphs")
    speech = _speech(fixtures_dir / "audio_1.wav", tmp_path / "s.wav", 1.0)
    out = tmp_path / "out.mp4"
    done = cli(
        tmp_path,
        "render",
        "--avatar",
        str(fixtures_dir / "source_4.png"),
        "--audio",
        str(speech),
        "--out",
        str(out),
        "--graphs",
        str(graphs),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.stat().st_size > 1000

    done = cli(tmp_path, "doctor", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["models"]["convert_extra_missing"] == ["torch", "onnx", "onnxconverter_common"]
    assert report["models"]["convert_hint"] == CONVERT_EXTRA_HINT
    cpu = [p for p in report["providers"] if p["name"] == "CPUExecutionProvider"]
    assert cpu and cpu[0]["initialises"], report["providers"]


def test_models_convert_import_and_serve_say_what_to_install(tmp_path: Path) -> None:
    weights = write_tree(tmp_path / "weights", standin_files())
    done = cli(tmp_path, "models", "convert", "--weights", str(weights))
    assert done.returncode == 4, done.stderr  # EXIT_NOT_CONVERTED
    assert done.stderr.strip() == f"Error: {CONVERT_EXTRA_HINT}"

    done = cli(tmp_path, "models", "import", str(weights))  # the checkpoint inspector
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == f"Error: {CONVERT_EXTRA_HINT}"

    done = cli(tmp_path, "serve", "--weights", str(weights), "--port", "9", "--duration", "0")
    assert done.returncode == 1, done.stderr  # EXIT_INPUT, before Ray starts
    assert CONVERT_EXTRA_HINT in done.stderr and "Traceback" not in done.stderr


def test_app_setup_says_what_to_install_when_the_exporter_cannot_import_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process has the extra; only the exporter's child lacks it (as where the app's
    interpreter and the child's differ): the child's import error becomes the same sentence,
    and no compiled entry is left behind."""
    store = ModelStore(tmp_path / "store")
    store.import_files([write_tree(tmp_path / "from-usb", standin_files())])
    monkeypatch.setenv("PYTHONPATH", str(BLOCKER))
    cache = tmp_path / "cache"
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(cache))
    models = RuntimeModels(store=store)  # the real exporter command, as the app runs it
    with pytest.raises(UserError) as caught:
        models.convert(progress=lambda _p: None, cancel=threading.Event())
    assert str(caught.value) == CONVERT_EXTRA_HINT
    assert not compiled_cache.is_converted(store)
    assert not list((cache / "compiled").glob("*"))
