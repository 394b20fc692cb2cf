"""Shared pytest fixtures: paths to the suite's own data (tests/data: golden files, real fixtures)
and an output folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import data
from tests.support.waiting import eventually

# `pytest` run directly (not through packaging/run-tests.sh) has no display: Qt would abort in
# pytest-qt's qapp. Offscreen unless the caller chose a platform.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "tests" / "output"


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    if not data.DATA.is_dir():
        pytest.fail(f"the test data is not at {data.DATA} (set IMTALKER_TEST_DATA)")
    return data.DATA


@pytest.fixture(scope="session")
def golden_dir(test_data_dir: Path) -> Path:
    return data.GOLDEN


@pytest.fixture(scope="session")
def fixtures_dir(test_data_dir: Path) -> Path:
    return data.FIXTURES


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Artifacts tests leave for a human to look at (screenshots, videos)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def recipe_weights(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Path:
    """Recipe-weight checkpoints in the published file formats (with Lightning extras)."""
    from models.recipe_checkpoints import write_recipe_checkpoints

    out = tmp_path_factory.mktemp("recipe_weights")
    write_recipe_checkpoints(out, golden_dir=golden_dir, extras=True)
    return out


@pytest.fixture(scope="session")
def recipe_weights_v2(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Path:
    """`recipe_weights` for model version v2 (manifests from golden/v2)."""
    from models.recipe_checkpoints import write_recipe_checkpoints

    out = tmp_path_factory.mktemp("recipe_weights_v2")
    write_recipe_checkpoints(out, golden_dir=golden_dir, extras=True, version="v2")
    return out


@pytest.fixture(scope="session")
def recipe_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An `IMTALKER_CACHE_DIR` holding the compiled graphs of `recipe_weights`."""
    return tmp_path_factory.mktemp("cache_home")


@pytest.fixture(scope="session")
def recipe_graphs(recipe_weights: Path, recipe_cache_home: Path) -> Path:
    """Full-size ONNX graphs of the recipe checkpoints, compiled as the app compiles them: the
    exporter in a child process, the result sealed in the compiled-model cache."""
    from runtime.model.compile import cache as compiled_cache
    from runtime.model.compile.weights import WeightsFolder

    return compiled_cache.convert(
        WeightsFolder(recipe_weights), root=recipe_cache_home / "compiled"
    )


@pytest.fixture(scope="session")
def recipe_cache_home_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`recipe_cache_home` for v2: a cache of its own, because a conversion prunes every other
    entry of its cache (one model at a time), which would delete v1's graphs mid-session."""
    return tmp_path_factory.mktemp("cache_home_v2")


@pytest.fixture(scope="session")
def recipe_graphs_v2(recipe_weights_v2: Path, recipe_cache_home_v2: Path) -> Path:
    """`recipe_graphs` for model version v2 (in `recipe_cache_home_v2`)."""
    from runtime.model.compile import cache as compiled_cache
    from runtime.model.compile.weights import WeightsFolder

    return compiled_cache.convert(
        WeightsFolder(recipe_weights_v2), root=recipe_cache_home_v2 / "compiled"
    )


# Threads the runtime starts (it names every thread it starts). The app's task runners
# ("imtalker-<task>") end when pytest-qt closes their widgets, which it does after this check.
OUR_THREADS = frozenset(
    {
        "live-worker",
        "pacer",
        "audio-watchdog",
        "file-playback",
        "recorder",
        "remote-link",
        "webcam",
        "webcam-preview",
        "mic-level",
        "exporter-stdout",
        "exporter-stderr",
        "session-compute",
        "session-receive",
    }
)


@pytest.fixture(autouse=True)
def _no_thread_left_running() -> Iterator[None]:
    """A test that leaves one of the project's threads running fails (a stop() that did not
    join, an engine never stopped): it would run on into the next test, and in the app into
    the next session. Threads get a moment to finish what they were told to."""
    before = set(threading.enumerate())
    yield

    def still_running() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name in OUR_THREADS
        ]

    eventually(lambda: not still_running(), 3.0, poll_s=0.02)
    left = still_running()
    assert not left, f"threads still running after the test: {sorted(t.name for t in left)}"
