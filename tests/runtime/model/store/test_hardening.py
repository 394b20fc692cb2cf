"""Hardening of the model store and the compiled-graph cache (issue 17): `models remove` deletes
only what the store recorded; a damaged `store.json` is set aside and rebuilt by re-hashing the
files present, and the user is told; every file the loader reads is part of the compiled-cache
key; an import refusal names the copy it deleted, never the user's file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from runtime.commands import models_cmd
from runtime.model import loader_files
from runtime.model.compile import cache as compiled_cache
from runtime.model.compile.cache import ConversionError, convert
from runtime.model.store.errors import VerificationError
from runtime.model.store.model_store import ModelStore
from runtime.model.store.records import MANIFEST
from tests.support.hub_server import sha256, standin_files, write_tree

ALL = [e.path for e in MANIFEST]
EXPORTER = [sys.executable, "-m", "tests.support.fake_exporter", "--delay", "0"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "downloads", standin_files())


@pytest.fixture
def full_store(tmp_path: Path, user_folder: Path) -> ModelStore:
    store = ModelStore(tmp_path / "store")
    store.import_files([user_folder])
    return store


def cli(*args: str) -> int:
    return models_cmd.main(["models", *args])


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- remove


def test_remove_never_deletes_model_files_the_store_did_not_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Copied by hand into the store folder, never imported: `status` calls them not verified.
    root = write_tree(tmp_path / "store", standin_files())
    before = {rel: (root / rel).read_bytes() for rel in ALL}
    assert cli("remove", "--store", str(root), "--yes") == 0
    out = capsys.readouterr().out
    assert {rel: (root / rel).read_bytes() for rel in ALL} == before
    assert "Deleted 0 model file(s)" in out and "not downloaded or imported" in out


def test_remove_keeps_a_recorded_file_replaced_since_and_deletes_the_rest(
    full_store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    replaced = full_store.path("generator.ckpt")
    replaced.write_bytes(b"the user's own different generator")
    assert cli("remove", "--store", str(full_store.root), "--yes", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["not_recorded"] == [str(replaced)]
    assert files_in(full_store.root) == {"generator.ckpt"}
    assert replaced.read_bytes() == b"the user's own different generator"
    assert len(doc["removed"]) == len(ALL) - 1 + 1  # the other files and store.json


def test_remove_deletes_a_recorded_file_whose_mtime_alone_moved(full_store: ModelStore) -> None:
    os.utime(full_store.path("renderer.ckpt"), ns=(1, 1))  # same bytes (backup restore, touch)
    result = full_store.remove()
    assert result.not_recorded == () and not full_store.root.exists()


# --------------------------------------------------------------------------- store.json


DAMAGED_RECORDS = {
    "not UTF-8": b'{"files": {"renderer.ckpt": "\x85\xff"}}',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "not an object": b"[1, 2, 3]",
    "wrong types": json.dumps({"files": {"renderer.ckpt": {"sha256": 5, "size": "x"}}}).encode(),
    "huge numbers": b'{"files": {"renderer.ckpt": {"sha256": "' + b"a" * 64 + b'", '
    b'"size": 1e400, "mtime_ns": 1, "first_verified": "x"}}}',
    "truncated": b'{"format": 1, "files": {"renderer.ckpt": {"sha',
}


@pytest.mark.parametrize("damage", list(DAMAGED_RECORDS))
def test_damaged_store_record_is_set_aside_and_rebuilt_by_rehashing(
    full_store: ModelStore, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = json.loads(full_store.record_path.read_text())["files"]
    full_store.record_path.write_bytes(DAMAGED_RECORDS[damage])

    fresh = ModelStore(full_store.root)  # what the next command sees
    status = fresh.status()
    assert status.complete, status.files
    assert status.notice is not None and "damaged" in status.notice
    assert f"{len(ALL)} file(s) re-verified" in status.notice
    aside = [p for p in full_store.root.iterdir() if p.name.startswith("store.json.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == DAMAGED_RECORDS[damage]
    assert aside[0].name in status.notice
    rebuilt = json.loads(full_store.record_path.read_text())["files"]
    assert {k: v["sha256"] for k, v in rebuilt.items()} == {k: v["sha256"] for k, v in good.items()}

    # The CLI tells the user once more from status; a later command finds a good record.
    assert cli("status", "--store", str(full_store.root)) == 0
    assert ModelStore(full_store.root).status().notice is None


def test_rebuild_keeps_what_the_damaged_record_still_says_and_refuses_mismatches(
    full_store: ModelStore,
) -> None:
    record = json.loads(full_store.record_path.read_text())
    record["files"]["generator.ckpt"]["sha256"] = "0" * 64  # readable, but not these bytes
    record["files"]["renderer.ckpt"]["source"] = "download cbsjtu01/IMTalker@abc"
    record["files"]["config.json"] = {"sha256": 1}  # damage elsewhere: not a model file
    full_store.record_path.write_text(json.dumps(record))

    status = {f.path: f for f in ModelStore(full_store.root).status().files}
    assert not status["generator.ckpt"].verified
    assert status["renderer.ckpt"].verified
    rebuilt = json.loads(full_store.record_path.read_text())["files"]
    assert rebuilt["renderer.ckpt"]["source"] == "download cbsjtu01/IMTalker@abc"
    assert "generator.ckpt" not in rebuilt


def test_rebuild_does_not_verify_a_damaged_checkpoint(full_store: ModelStore) -> None:
    full_store.path("renderer.ckpt").write_bytes(b"<html>not a checkpoint</html>")
    full_store.record_path.write_bytes(b"\xff\xfe")
    store = ModelStore(full_store.root)
    status = {f.path: f for f in store.status().files}
    assert not status["renderer.ckpt"].verified
    assert store.notice is not None and "renderer.ckpt (not a PyTorch checkpoint)" in store.notice


def test_gui_model_state_tells_of_a_rebuilt_record(full_store: ModelStore) -> None:
    from desktop_app.runtime_services.models import RuntimeModels

    full_store.record_path.write_bytes(b"{")
    state = RuntimeModels(store=ModelStore(full_store.root)).model_state()
    assert "damaged" in state.detail and "re-verified" in state.detail


# --------------------------------------------------------------------------- cache key


def test_a_stray_safetensors_file_is_part_of_the_cache_key(full_store: ModelStore) -> None:
    entry = convert(full_store, command=EXPORTER)
    assert compiled_cache.converted_dir(full_store) == entry

    stray = full_store.root / "renderer.safetensors"
    stray.write_bytes(b"weights the graphs above were not built from")
    assert loader_files.chosen(full_store.root)["renderer"] == "renderer.safetensors"
    assert compiled_cache.converted_dir(full_store) is None, "graphs of other files not served"

    rebuilt = convert(full_store, command=EXPORTER)
    assert rebuilt != entry
    manifest = json.loads((rebuilt / "manifest.json").read_text())
    assert manifest["sources"]["renderer.safetensors"] == sha256(stray.read_bytes())
    read = json.loads((rebuilt / loader_files.SOURCES_FILE).read_text())
    assert read["renderer.safetensors"] == sha256(stray.read_bytes())


EXPORTER_READING_OTHER_FILES = """
import argparse, json, pathlib, sys
from tests.support.fake_exporter import main
sys.argv = [sys.argv[0], *sys.argv[1:]]
code = main()
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
sources = json.loads((out / "sources.json").read_text())
sources[{relpath!r}] = {digest!r}
(out / "sources.json").write_text(json.dumps(sources))
raise SystemExit(code)
"""


@pytest.mark.parametrize(
    ("relpath", "digest", "message"),
    [
        ("generator.safetensors", "1" * 64, "not among the files"),
        ("renderer.ckpt", "2" * 64, "changed while it was being converted"),
    ],
)
def test_graphs_built_from_files_outside_the_key_are_refused(
    full_store: ModelStore, tmp_path: Path, relpath: str, digest: str, message: str
) -> None:
    script = tmp_path / "exporter.py"
    script.write_text(EXPORTER_READING_OTHER_FILES.format(relpath=relpath, digest=digest))
    with pytest.raises(ConversionError, match=message):
        convert(full_store, command=[sys.executable, str(script), "--delay", "0"])
    assert compiled_cache.converted_dir(full_store) is None
    assert [p.name for p in compiled_cache.cache_root().iterdir()] == []


def test_an_exporter_that_does_not_say_what_it_read_is_refused(
    full_store: ModelStore, tmp_path: Path
) -> None:
    script = tmp_path / "exporter.py"
    script.write_text(
        "import pathlib, sys\nfrom tests.support.fake_exporter import main\ncode = main()\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "(out / 'sources.json').unlink()\nraise SystemExit(code)\n"
    )
    with pytest.raises(ConversionError, match="did not say which files it read"):
        convert(full_store, command=[sys.executable, str(script), "--delay", "0"])


def test_loader_files_prefer_safetensors_and_name_each_part(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "w", standin_files())
    assert loader_files.chosen(root) == {
        "renderer": "renderer.ckpt",
        "generator": "generator.ckpt",
        "audio_encoder": "wav2vec2-base-960h/pytorch_model.bin",
    }
    (root / "wav2vec2-base-960h" / "model.safetensors").write_bytes(b"x")
    (root / "generator.ckpt").unlink()
    assert loader_files.chosen(root) == {
        "renderer": "renderer.ckpt",
        "audio_encoder": "wav2vec2-base-960h/model.safetensors",
    }


# --------------------------------------------------------------------------- import refusal


def test_import_refusal_says_the_copy_was_deleted_not_the_users_file(
    tmp_path: Path, user_folder: Path
) -> None:
    store = ModelStore(tmp_path / "store")
    store.import_files([user_folder])
    other = write_tree(tmp_path / "other", standin_files(seed=7))
    with pytest.raises(VerificationError) as caught:
        store.import_files([other / "renderer.ckpt"])
    message = str(caught.value)
    assert "The file was deleted" not in message
    assert "copy made in the store was deleted" in message
    assert str(other / "renderer.ckpt") in message and "not touched" in message
    assert (other / "renderer.ckpt").is_file()


# --------------------------------------------------------------------------- folders


def test_data_dir_pointing_at_a_file_is_one_sentence_for_every_models_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_folder: Path
) -> None:
    import subprocess

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    env = {**os.environ, "IMTALKER_DATA_DIR": str(blocker), "PYTHONPATH": str(Path.cwd())}
    for action in (["status"], ["import", str(user_folder), "--no-convert"], ["remove", "--yes"]):
        done = subprocess.run(
            [sys.executable, "-m", "runtime.commands.cli", "models", *action],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, (action, done.stderr)
        assert "Traceback" not in done.stderr and "IMTALKER_DATA_DIR" in done.stderr, done.stderr
        assert "is a file, not a folder" in done.stderr
    assert blocker.read_text() == "x"


def test_cache_dir_pointing_at_a_file_stops_conversion_with_a_sentence(
    full_store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.core.validate import ValidationError

    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(blocker))
    with pytest.raises(ValidationError, match=r"IMTALKER_CACHE_DIR.*is a file, not a folder"):
        convert(full_store, command=EXPORTER)


def test_a_weights_folder_is_never_written_even_with_a_damaged_store_json(
    tmp_path: Path,
) -> None:
    from runtime.model.compile.weights import WeightsFolder

    root = write_tree(tmp_path / "weights", standin_files())
    (root / "store.json").write_bytes(b"\xff damaged")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    folder = WeightsFolder.complete(root)
    assert folder.verified_digests() is not None
    folder.status()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_rebuild_does_not_trust_anew_a_checkpoint_the_inspector_refuses(
    full_store: ModelStore, tmp_path: Path
) -> None:
    """A damaged record plus a swapped-in malicious renderer: the rebuild must not pin it (it
    is trusted anew only as an import would, after the inspector), and nothing in it runs."""
    from tests.support.malicious_checkpoints import MarkerPayload, with_payload

    marker = tmp_path / "ran.txt"
    with_payload(full_store.path("renderer.ckpt"), MarkerPayload(marker))
    full_store.record_path.write_bytes(b"\xff\xfe")
    store = ModelStore(full_store.root)
    status = {f.path: f for f in store.status().files}
    assert not status["renderer.ckpt"].verified
    assert status["generator.ckpt"].verified
    assert store.notice is not None and "renderer.ckpt (" in store.notice
    rebuilt = json.loads(full_store.record_path.read_text())["files"]
    assert "renderer.ckpt" not in rebuilt
    assert rebuilt["generator.ckpt"]["model_version"] in ("v1", "v2")
    assert not marker.exists()


def test_a_checkpoint_changed_since_it_was_verified_is_named_and_status_says_so(
    full_store: ModelStore,
) -> None:
    """Same size, date put back: the conversion finds it (the exporter's digest) and says to
    restore it, not to convert again; `models status` then no longer calls it verified."""
    path = full_store.path("renderer.ckpt")
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert full_store.status().complete  # size and date unchanged: trusted without re-hashing
    with pytest.raises(ConversionError) as caught:
        convert(full_store, command=EXPORTER)
    message = str(caught.value)
    assert "changed since it was verified" in message and "restore" in message
    assert "models download" in message and "Run the conversion again" not in message
    status = ModelStore(full_store.root).file_status("renderer.ckpt")
    assert not status.verified and "changed since it was verified" in (status.problem or "")
    path.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0xFF]))  # the original again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ModelStore(full_store.root).status(deep=True).complete
    assert ModelStore(full_store.root).status().complete
