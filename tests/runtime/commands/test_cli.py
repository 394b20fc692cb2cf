"""The command line: help, honest placeholders, and `doctor` on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runtime.commands import cli


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_command() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("doctor", "render", "live", "models"):
        assert command in out.stdout


def test_doctor_json_reports_this_machine(tmp_path: Path) -> None:
    out = run_cli("doctor", "--json", env={"IMTALKER_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    providers = {p["name"]: p for p in report["providers"]}
    assert providers["CPUExecutionProvider"]["initialises"] is True
    assert providers["CPUExecutionProvider"]["used"][0] == "CPUExecutionProvider"
    assert report["packages"]["numpy"]
    assert report["models"]["store"].startswith(str(tmp_path))
    assert report["models"]["complete"] is False
    assert not any(report["models"]["files"].values())
    if not report["gpu"]["present"]:
        # Compiled-in GPU providers must be reported as not initialising, with a reason.
        for name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            if name in providers:
                assert providers[name]["initialises"] is False
                assert providers[name]["detail"] != "ok"
    cuda = report["cuda"]
    assert set(cuda) >= {"driver", "build_cuda", "problem", "libraries", "wheels", "preloaded"}
    if not report["gpu"]["present"]:
        # No GPU here: stated, with the reason, never an empty section.
        assert cuda["driver"]["present"] is False and cuda["driver"]["reason"]
        assert cuda["driver"]["driver_version"] is None and cuda["problem"] is None
    openvino = report["openvino"]
    if openvino["installed"]:
        devices = {d["device"]: d for d in openvino["devices"]}
        assert "FP32" in devices["CPU"]["capabilities"] and devices["CPU"]["name"]
    if not report["audio_inputs"]:
        assert report["audio_error"]
    if not report["virtual_camera"]["available"]:
        assert report["virtual_camera"]["detail"]


def test_doctor_human_output() -> None:
    out = run_cli("doctor")
    assert out.returncode == 0
    for heading in (
        "ONNX Runtime providers",
        "GPU:",
        "Audio inputs:",
        "Virtual camera",
        "Model files",
    ):
        assert heading in out.stdout


def test_parser_builds_in_process() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["doctor", "--json"])
    assert args.command == "doctor" and args.json
