"""Shared pytest fixtures: paths to ../shared (golden files, real fixtures) and an output folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMTALKER_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
FIXTURES = SHARED / "fixtures" / "imtalker"
OUTPUT = ROOT / "tests" / "output"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared inputs not found at {SHARED} (set IMTALKER_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Artifacts tests leave for a human to look at (screenshots, videos)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT
