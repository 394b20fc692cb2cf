"""What pyproject.toml asks each platform to install (issue 23, items 2, 3 and 5): the base
install runs compiled graphs on Windows x64, macOS arm64 and Linux x86_64/aarch64 with exactly
one ONNX Runtime build each, torch and onnx are only in the `convert` extra, PyInstaller only
in `bundle`, and the README's set-up installs the convert extra."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

# PEP 508 environments as each platform's Python reports them.
PLATFORMS = {
    "windows-x64": {"sys_platform": "win32", "platform_machine": "AMD64"},
    "windows-arm64": {"sys_platform": "win32", "platform_machine": "ARM64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_machine": "arm64"},
    "linux-x86_64": {"sys_platform": "linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_machine": "aarch64"},
}
GPU_BUILD = {"windows-x64", "linux-x86_64"}
"""Where onnxruntime-gpu has wheels on PyPI (checked 2026-12: none for Linux aarch64, Windows
on Arm or macOS)."""


def _installed(requirements: list[str], platform: str) -> set[str]:
    env = {"python_version": "3.11", "python_full_version": "3.11.7", **PLATFORMS[platform]}
    out = set()
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.add(req.name.lower())
    return out


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_one_onnxruntime_build_per_platform(platform: str) -> None:
    names = _installed(PROJECT["dependencies"], platform)
    builds = names & {"onnxruntime", "onnxruntime-gpu"}
    expected = "onnxruntime-gpu" if platform in GPU_BUILD else "onnxruntime"
    assert builds == {expected}
    assert {"pyside6-essentials", "numpy", "av", "pyvirtualcam", "sounddevice"} <= names


def test_torch_and_onnx_are_the_convert_extra_only() -> None:
    heavy = {"torch", "onnx", "onnxconverter-common"}
    for platform in PLATFORMS:
        assert not _installed(PROJECT["dependencies"], platform) & heavy, platform
    convert = {Requirement(r).name.lower() for r in PROJECT["optional-dependencies"]["convert"]}
    assert convert == heavy
    bundle = {Requirement(r).name.lower() for r in PROJECT["optional-dependencies"]["bundle"]}
    assert bundle == {"pyinstaller"}


def test_the_readme_set_up_installs_the_convert_extra() -> None:
    """packaging/run-tests.sh (`.ci/run`) runs bootstrap.sh, whose editable install must carry
    the convert extra: the tests build graphs with onnx and checkpoints with torch."""
    script = (ROOT / "packaging" / "bootstrap.sh").read_text(encoding="utf-8")
    installs = [line for line in script.splitlines() if "pip install" in line and " -e " in line]
    assert installs, "bootstrap.sh installs the project editable"
    extras = installs[0].split('".[', 1)[1].split("]", 1)[0].split(",")
    assert {"dev", "server", "convert"} <= set(extras)
