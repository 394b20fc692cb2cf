"""The package boundaries are enforced by import-linter; prove a violation is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "PATH": str(LINT.parent)},
    )


def copy_tree(dst: Path) -> Path:
    for name in ("desktop_app", "runtime", "models"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_contracts_hold() -> None:
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("package", "statement"),
    [
        ("runtime", "import torch"),
        ("runtime", "import PySide6.QtCore"),
        ("desktop_app", "import onnxruntime"),
        ("desktop_app", "import torch"),
        ("models", "import PySide6"),
    ],
)
def test_breaking_a_contract_fails(tmp_path: Path, package: str, statement: str) -> None:
    root = copy_tree(tmp_path)
    (root / package / "_violation.py").write_text(statement + "\n")
    out = lint(root)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout


@pytest.mark.parametrize(
    ("module", "statement"),
    [
        # A lower layer of runtime/ reaching up, one hop and two.
        ("runtime/model/_violation.py", "import runtime.engine.live.engine\n"),
        ("runtime/media/_violation.py", "from runtime.sinks import SinkSet\n"),
        ("runtime/core/_violation.py", "from runtime.model import contract\n"),
        ("runtime/sinks/_violation.py", "from runtime.commands import cli\n"),
        # A widget importing the runtime implementation instead of the services protocols.
        ("desktop_app/_violation.py", "from desktop_app.runtime_services import devices\n"),
    ],
)
def test_breaking_a_layer_fails(tmp_path: Path, module: str, statement: str) -> None:
    root = copy_tree(tmp_path)
    (root / module).write_text(statement)
    out = lint(root)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout


def test_children_import_models_from_this_tree() -> None:
    """The exporter and the checkpoint inspector run as `python -m models...` children with
    this tree first on their path (it once pointed at runtime/ after a move)."""
    from runtime.model.child_env import child_env, project_root

    assert project_root() == ROOT
    assert (project_root() / "models" / "export.py").is_file()
    assert child_env()["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
