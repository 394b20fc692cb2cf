"""The wheel runs from anywhere (issue 23, item 2): built from a copy of the sources, installed
into a fresh virtual environment outside the checkout, it answers `doctor --json`, imports a
model from a folder and renders with it, and opens the desktop app offscreen.

No network and no second torch: the new environment reaches this one's installed
dependencies through a .pth file and the wheel goes in with `--no-deps`. The checkout is not
importable there (no PYTHONPATH, the working folder outside it), which the test checks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from runtime.model.compile import cache as compiled_cache
from runtime.model.store.model_store import ModelStore
from tests.support.hub_server import standin_files, write_tree
from tests.support.installed import Install, check_app, check_doctor, check_render, ok, speech_clip

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "desktop_app", "runtime", "models")
SOURCES += ("resources",)
EXPORTER = [sys.executable, "-m", "tests.support.fake_exporter", "--delay", "0"]


def build_wheel(out: Path) -> Path:
    """`pip wheel` of a clean copy (setuptools' build/ folder would otherwise keep stale files
    in the checkout and in the wheel)."""
    src = out / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    ok(
        subprocess.run(
            [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    )
    (wheel,) = out.glob("imtalker_cam-*.whl")
    return wheel


def make_venv(venv: Path, wheel: Path) -> Path:
    """A new environment with the wheel in it and this one's packages behind it."""
    ok(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=60))
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    theirs = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    # Appended after the new site-packages, so the wheel's copy is what gets imported; .pth
    # files of the directories named here are not run (this checkout's editable finder stays
    # out).
    Path(theirs, "_imtalker_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    ok(
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "--disable-pip-version-check"),
                *("--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    )
    return python


def test_the_wheel_runs_outside_the_checkout(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = build_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    python = make_venv(venv, wheel)
    scripts = python.parent
    install = Install(command=(str(scripts / "imtalker-cam"),), home=tmp_path / "home")

    probe = (
        "import importlib.util, json\n"
        "import desktop_app, models, resources, runtime\n"
        "files = {m.__name__: m.__file__ for m in (desktop_app, models, resources, runtime)}\n"
        "tests = importlib.util.find_spec('tests') is not None\n"
        "print(json.dumps({'files': files, 'tests': tests}))"
    )
    where = json.loads(ok(install.run_program([str(python), "-c", probe])).stdout)
    for name, file in where["files"].items():
        assert Path(file).resolve().is_relative_to(venv.resolve()), (name, file)
    assert not where["tests"], "the checkout's tests package is importable: not a clean install"

    report = check_doctor(install)
    assert report["packages"]["imtalker-cam"] == "0.1.0"

    # A model imported from a folder by the installed app, converted by the stand-in exporter
    # (the real one needs minutes for full-size graphs), rendered by the installed app.
    weights = write_tree(tmp_path / "usb", standin_files())
    ok(install.run("models", "import", str(weights), "--no-convert"))
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(install.home / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(install.home / "cache"))
    compiled_cache.convert(ModelStore(), command=EXPORTER)
    status = json.loads(ok(install.run("models", "status", "--json")).stdout)
    assert status["converted"], status

    speech = speech_clip(fixtures_dir / "audio_1.wav", tmp_path / "speech.wav", 1.0)
    check_render(install, avatar=fixtures_dir / "source_4.png", speech=speech, extra=())
    check_app(install)
