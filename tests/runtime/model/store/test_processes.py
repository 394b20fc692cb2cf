"""The model store shared by processes: no record update is lost to a concurrent one, and the
temporary files of a killed import are removed (and reported) by the next run, never while an
import runs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from runtime.model.store.model_store import ModelStore
from runtime.model.store.records import WAV2VEC_DIR, StoreRecord
from tests.support.hub_server import standin_files, write_tree

ROOT = Path(__file__).resolve().parents[4]
A, B = f"{WAV2VEC_DIR}/config.json", f"{WAV2VEC_DIR}/preprocessor_config.json"


def place(store: ModelStore, relpath: str) -> None:
    final = store.path(relpath)
    data = final.read_bytes()
    store.place_verified(
        relpath,
        final,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        source="test",
        model_version=None,
    )


def test_no_record_update_is_lost_to_another_process(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / WAV2VEC_DIR).mkdir(parents=True)
    (root / A).write_text("{}")
    (root / B).write_text('{"b": 1}')
    first, second = ModelStore(root), ModelStore(root)
    first_read, second_done = threading.Event(), threading.Event()
    write = first.write_record

    def slow_write(record: StoreRecord) -> None:
        # The first has read store.json and is about to rewrite it: the second's update must
        # wait for it (a lock) rather than land in between and be overwritten.
        first_read.set()
        second_done.wait(timeout=1.0)
        write(record)

    first.write_record = slow_write  # type: ignore[method-assign]

    def second_update() -> None:
        first_read.wait()
        place(second, B)
        second_done.set()

    other = threading.Thread(target=second_update)
    other.start()
    place(first, A)
    other.join()
    assert set(ModelStore(root).read_record().files) == {A, B}


CHILD = """
import sys, time
from pathlib import Path
from runtime.model.store.model_store import ModelStore

def stall(progress):
    if progress.phase == "copy" and progress.file_done > 0:
        print("copying", flush=True)
        time.sleep(60)

ModelStore(Path(sys.argv[1])).import_files([Path(sys.argv[2])], progress=stall)
"""


def test_a_killed_imports_temporary_files_are_removed_next_time(tmp_path: Path) -> None:
    user = write_tree(tmp_path / "downloads", standin_files())
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(user)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "copying"
        temps = list(root.glob(".*.import*.tmp"))
        assert len(temps) == 1
        status = ModelStore(root).status()  # an import runs: its files are its own
        assert temps[0].exists() and status.notice is None
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    status = ModelStore(root).status()
    assert not temps[0].exists()
    assert status.notice is not None
    assert "Removed 1 temporary file(s)" in status.notice and "interrupted import" in status.notice


CONVERTING = """
import sys, time
from pathlib import Path
from runtime.core.leftovers import claim_folder
tmp = Path(sys.argv[1])
claim = claim_folder(tmp)  # as compile.cache.convert holds its temporary folder
tmp.mkdir()
(tmp / "renderer.onnx").write_bytes(bytes(4096))
print("converting", flush=True)
time.sleep(60)
"""


def test_a_killed_conversions_folder_is_removed_by_the_next_one(tmp_path: Path) -> None:
    from runtime.model.compile import cache

    root = tmp_path / "compiled"
    root.mkdir()
    tmp = root / ".tmp-0123-abcd"
    child = subprocess.Popen(
        [sys.executable, "-c", CONVERTING, str(tmp)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "converting"
        cache._remove_abandoned_conversions(root)
        assert (tmp / "renderer.onnx").exists()  # still converting: its own
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    cache._remove_abandoned_conversions(root)  # what `convert` does first
    assert list(root.iterdir()) == []
