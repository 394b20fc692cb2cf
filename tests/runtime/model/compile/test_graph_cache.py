"""The compiled-graph cache keeps one entry per set of file contents, several side by side
(issue 24, item 2): the same files imported into the store or named with `--weights` share an
entry and convert once; entries stay under a size cap with the least recently used going first;
an entry another running process uses is never deleted. Conversions run the stand-in exporter
(tests/support/fake_exporter.py); the other process is a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.model.compile import cache as compiled_cache
from runtime.model.compile import lease, lru
from runtime.model.compile.cache import ConversionProgress, convert
from runtime.model.compile.weights import WeightsFolder
from runtime.model.store.model_store import ModelStore
from tests.conftest import ROOT
from tests.support.hub_server import standin_files, write_tree

EXPORTER = [sys.executable, "-m", "tests.support.fake_exporter", "--delay", "0"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))


def folder(tmp_path: Path, seed: int) -> WeightsFolder:
    return WeightsFolder.complete(write_tree(tmp_path / f"weights{seed}", standin_files(seed=seed)))


def let_go(*entries: Path) -> None:
    """This process stops using `entries` (as another process that has finished would)."""
    for entry in entries:
        lease.release(entry)


def stamp(entry: Path, when: float) -> None:
    used = entry / lru.USED_FILE
    used.touch()
    os.utime(used, (when, when))


def test_the_same_files_imported_or_named_with_weights_convert_once(tmp_path: Path) -> None:
    files = write_tree(tmp_path / "downloads", standin_files())
    store = ModelStore(tmp_path / "store")
    store.import_files([files])
    assert store.model_version() == "v1"  # recorded for the store, unknown for a folder
    entry = convert(store, command=EXPORTER)
    weights = WeightsFolder.complete(files)
    assert compiled_cache.entry_dir(weights) == entry
    again: list[ConversionProgress] = []
    assert convert(weights, command=EXPORTER, progress=again.append) == entry
    assert again == [], "converted a second time"
    assert compiled_cache.converted_dir(store) == entry


def test_entries_stay_side_by_side_under_the_cap_least_recently_used_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = convert(folder(tmp_path, 0), command=EXPORTER)
    size = lru.entry_bytes(a)
    monkeypatch.setenv(compiled_cache.MAX_GB_ENV, str(2.5 * size / 1e9))  # two fit, not three
    b = convert(folder(tmp_path, 1), command=EXPORTER)
    assert a.is_dir() and b.is_dir() and a != b, "the first entry was deleted"
    let_go(a, b)
    stamp(a, 2_000_000_000.0)  # A was used after B
    stamp(b, 1_900_000_000.0)
    c = convert(folder(tmp_path, 2), command=EXPORTER)
    assert a.is_dir() and c.is_dir()
    assert not b.exists(), "the least recently used entry should have gone"
    assert sorted(p.name for p in a.parent.iterdir()) == sorted([a.name, c.name])


HOLDER = """
import sys
from pathlib import Path
from runtime.model.compile import lease
assert lease.hold(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()
"""


def test_an_entry_another_process_uses_is_never_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = convert(folder(tmp_path, 0), command=EXPORTER)
    let_go(a)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(a)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert lease.in_use(a)
        monkeypatch.setenv(compiled_cache.MAX_GB_ENV, "1e-9")  # nothing fits
        b = convert(folder(tmp_path, 1), command=EXPORTER)
        assert a.is_dir() and b.is_dir(), "an entry in use was deleted"
        let_go(b)
        removed = compiled_cache.remove_entries()
        assert removed == [b] and a.is_dir()
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    # The holder has gone (the OS dropped its lock): its lease is a leftover, deleted on sight.
    assert not lease.in_use(a)
    assert list((a / lease.LEASES_DIR).iterdir()) == []
    assert compiled_cache.remove_entries() == [a]
