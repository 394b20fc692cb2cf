"""The model store (import, verification, trust on first use, remove), the compiled-graph cache
and the `models` command, on stand-in files; and, with the real exporter, import of the recipe
checkpoints followed by conversion."""

from __future__ import annotations

import errno
import json
import os
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from runtime.commands import models_cmd
from runtime.core.files import temp_path
from runtime.model.compile import cache as compiled_cache
from runtime.model.compile.cache import (
    ConversionError,
    ConversionProgress,
    ExporterUnavailable,
    cache_key,
    check_entry,
    convert,
    is_converted,
)
from runtime.model.contract import FP16_GRAPHS, GRAPHS
from runtime.model.store import importing as store_import
from runtime.model.store.errors import Cancelled, DiskFullError, ModelStoreError, VerificationError
from runtime.model.store.model_store import ModelStore
from runtime.model.store.records import MANIFEST
from runtime.model.transfer import TransferProgress
from tests.hub_server import read_tree, sha256, standin_files, write_tree

ALL = [e.path for e in MANIFEST]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "downloads", standin_files())


# --------------------------------------------------------------------------- locations


def test_default_store_follows_the_data_dir_override(tmp_path: Path) -> None:
    assert ModelStore().root == tmp_path / "data" / "models"
    assert compiled_cache.cache_root() == tmp_path / "cache" / "compiled"


# --------------------------------------------------------------------------- import


def test_import_folder_copies_verifies_and_never_moves(
    store: ModelStore, user_folder: Path
) -> None:
    before = read_tree(user_folder)
    result = store.import_files([user_folder])
    assert sorted(result.imported) == sorted(ALL) and result.missing == ()
    assert read_tree(user_folder) == before, "the user's files are untouched"
    status = store.status(deep=True)
    assert status.complete
    record = json.loads(store.record_path.read_text())
    for rel, data in before.items():
        assert store.path(rel).read_bytes() == data
        assert record["files"][rel]["sha256"] == sha256(data)
        assert record["files"][rel]["source"].startswith("import ")
    assert [p.name for p in store.root.rglob(".*")] == []


def test_import_finds_files_in_common_layouts(store: ModelStore, tmp_path: Path) -> None:
    files = standin_files()
    # A `checkpoints/` folder one level down (the reference README's layout) ...
    write_tree(tmp_path / "a" / "checkpoints", {k: v for k, v in files.items() if "/" not in k})
    # ... the wav2vec2 folder itself, and single files.
    w2v = write_tree(tmp_path / "b", {k: v for k, v in files.items() if "/" in k})
    sources = [tmp_path / "a", w2v / "wav2vec2-base-960h"]
    result = store.import_files(sources)
    assert sorted(result.imported) == sorted(ALL)
    assert store.status().complete


def test_import_single_files_and_partial_import(store: ModelStore, user_folder: Path) -> None:
    result = store.import_files([user_folder / "renderer.ckpt", user_folder / "generator.ckpt"])
    assert sorted(result.imported) == ["generator.ckpt", "renderer.ckpt"]
    assert set(result.missing) == {p for p in ALL if "/" in p}
    status = {f.path: f for f in store.status().files}
    assert status["renderer.ckpt"].verified and not status["wav2vec2-base-960h/config.json"].present


def test_import_rejects_unknown_names_and_damaged_files(
    store: ModelStore, user_folder: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "renderer (1).ckpt"
    renamed.write_bytes((user_folder / "renderer.ckpt").read_bytes())
    with pytest.raises(ModelStoreError, match="not a file of the model"):
        store.import_files([renamed])

    truncated = tmp_path / "t" / "renderer.ckpt"
    truncated.parent.mkdir()
    truncated.write_bytes((user_folder / "renderer.ckpt").read_bytes()[:-5000])
    with pytest.raises(VerificationError, match=r"renderer.ckpt.*Nothing was stored"):
        store.import_files([truncated])
    assert not store.path("renderer.ckpt").exists()
    assert truncated.exists(), "the user's own file is never deleted"

    html = tmp_path / "h" / "wav2vec2-base-960h" / "config.json"
    html.parent.mkdir(parents=True)
    html.write_text("<html><body>Sign in to the proxy</body></html>")
    with pytest.raises(VerificationError, match="not a JSON file"):
        store.import_files([html])


def test_import_of_a_different_file_after_first_verification_is_refused(
    store: ModelStore, user_folder: Path, tmp_path: Path
) -> None:
    store.import_files([user_folder])
    before = read_tree(store.root)
    other = write_tree(tmp_path / "other", standin_files(seed=9))
    with pytest.raises(VerificationError, match=r"first verified.*models remove"):
        store.import_files([other / "generator.ckpt"])
    assert read_tree(store.root) == before

    # After `remove`, the first verification starts over.
    store.remove()
    store.import_files([other])
    assert store.status(deep=True).complete


def test_reimport_of_identical_files_changes_nothing(store: ModelStore, user_folder: Path) -> None:
    store.import_files([user_folder])
    record = store.record_path.read_bytes()
    result = store.import_files([user_folder])
    assert sorted(result.unchanged) == sorted(ALL) and result.imported == ()
    assert store.record_path.read_bytes() == record


def test_import_in_place_adopts_files_copied_by_hand(store: ModelStore, user_folder: Path) -> None:
    write_tree(store.root, standin_files())
    assert not store.status().complete
    store.import_files([store.root])
    assert store.status(deep=True).complete


def test_import_never_writes_a_final_path_before_it_is_complete(
    store: ModelStore, user_folder: Path
) -> None:
    seen: list[TransferProgress] = []

    def on_progress(p: TransferProgress) -> None:
        if p.file_total is not None and p.file_done < p.file_total:
            assert not store.path(p.path).exists()
        seen.append(p)

    store.import_files([user_folder], progress=on_progress)
    assert seen[-1].done == seen[-1].total == sum(len(v) for v in standin_files().values())


def test_disk_full_during_import_leaves_the_previous_store_intact(
    store: ModelStore, user_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.import_files([user_folder / "renderer.ckpt"])
    before = read_tree(store.root)

    def full(f: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_import, "write_all", full)
    with pytest.raises(DiskFullError, match="left as it was"):
        store.import_files([user_folder])
    assert read_tree(store.root) == before


def test_cancelled_import_leaves_no_temp_file(store: ModelStore, user_folder: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        store.import_files([user_folder], cancel=cancel)
    assert not store.root.exists() or [p for p in store.root.rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------- status


def test_status_tells_missing_modified_and_changed(store: ModelStore, user_folder: Path) -> None:
    assert {f.path: (f.present, f.verified) for f in store.status().files} == {
        p: (False, False) for p in ALL
    }
    store.import_files([user_folder])
    target = store.path("generator.ckpt")

    os.utime(target, ns=(1, 1))  # same bytes, different mtime
    fast = store.file_status("generator.ckpt")
    assert fast.present and not fast.verified and "status --deep" in (fast.problem or "")
    assert store.status(deep=True).complete, "re-hashing proves the bytes are unchanged"
    assert store.file_status("generator.ckpt").verified, "and the record was refreshed"

    data = bytearray(target.read_bytes())
    data[1000] ^= 1
    target.write_bytes(bytes(data))
    os.utime(target, ns=(1, 1))
    deep = {f.path: f for f in store.status(deep=True).files}["generator.ckpt"]
    assert not deep.verified and "SHA-256 differs" in (deep.problem or "")


# --------------------------------------------------------------------------- remove


def test_remove_deletes_only_the_stores_own_files(store: ModelStore, user_folder: Path) -> None:
    store.import_files([user_folder])
    notes = store.root / "notes.txt"
    notes.write_text("mine")
    extra = store.root / "wav2vec2-base-960h" / "vocab.json"
    extra.write_text("{}")
    # Leftovers of an interrupted download and of a crashed copy are the store's own.
    store.partial_path("renderer.ckpt").write_bytes(b"partial")
    store.partial_info_path("renderer.ckpt").write_text("{}")
    crashed = temp_path(store.path("generator.ckpt"), "import")
    crashed.write_bytes(b"x")

    result = store.remove()
    assert notes.read_text() == "mine" and extra.read_text() == "{}"
    assert set(result.kept) == {notes, extra}
    assert {p for p in store.root.rglob("*") if p.is_file()} == {notes, extra}
    assert len(result.removed) == len(ALL) + 4


def test_remove_of_an_empty_store_is_harmless(store: ModelStore) -> None:
    assert store.remove().removed == ()


# --------------------------------------------------------------------------- compiled cache


def test_cache_key_depends_on_weights_and_exporter_version(monkeypatch: pytest.MonkeyPatch) -> None:
    digests = {p: sha256(p.encode()) for p in ALL}
    key = cache_key(digests)
    assert key == cache_key(dict(reversed(list(digests.items()))))
    assert cache_key({**digests, "renderer.ckpt": "0" * 64}) != key
    monkeypatch.setattr(compiled_cache, "EXPORTER_VERSION", compiled_cache.EXPORTER_VERSION + 1)
    assert cache_key(digests) != key


STANDIN_EXPORTER = textwrap.dedent(
    """
    # Test double of models.export: the child-process protocol, tiny files instead of graphs.
    import argparse, json, os, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    names = {names!r}
    mode = os.environ.get("STANDIN_EXPORTER_MODE", "ok")
    assert os.path.isfile(os.path.join(a.weights, "renderer.ckpt"))
    assert os.listdir(a.out) == []
    print("loading checkpoints", flush=True)
    from pathlib import Path
    from tests.support.fake_exporter import report_sources
    report_sources(Path(a.weights), Path(a.out))
    for i, name in enumerate(names):
        if mode == "fail" and i == 2:
            print("RuntimeError: export of " + name + " failed", file=sys.stderr)
            sys.exit(3)
        if mode == "hang" and i == 1:
            time.sleep(60)
        with open(os.path.join(a.out, name + ".onnx"), "wb") as f:
            f.write(name.encode() * 100)
        with open(os.path.join(a.out, name + ".json"), "w") as f:
            json.dump({{"graph": name}}, f)
        if name in {fp16}:
            with open(os.path.join(a.out, name + ".fp16.onnx"), "wb") as f:
                f.write(name.encode() * 50)
        print(json.dumps({{"graph": name, "done": i + 1, "total": len(names)}}), flush=True)
    """
).format(names=[g.name for g in GRAPHS], fp16=list(FP16_GRAPHS))


@pytest.fixture
def standin_exporter(tmp_path: Path) -> list[str]:
    script = tmp_path / "standin_exporter.py"
    script.write_text(STANDIN_EXPORTER)
    return [sys.executable, str(script)]


@pytest.fixture
def full_store(store: ModelStore, user_folder: Path) -> ModelStore:
    store.import_files([user_folder])
    return store


def test_convert_refuses_an_incomplete_store(
    store: ModelStore, standin_exporter: list[str]
) -> None:
    with pytest.raises(ConversionError, match="not all present and verified"):
        convert(store, command=standin_exporter)


def test_convert_without_the_exporter_says_so(
    full_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiled_cache, "exporter_available", lambda: False)
    with pytest.raises(ExporterUnavailable, match=r"exporter .*not available"):
        convert(full_store)
    assert not is_converted(full_store)


def test_convert_protocol_entry_manifest_and_tamper_detection(
    full_store: ModelStore, standin_exporter: list[str]
) -> None:
    events: list[ConversionProgress] = []
    entry = convert(full_store, command=standin_exporter, progress=events.append)
    assert [(e.graph, e.done) for e in events] == [(g.name, i + 1) for i, g in enumerate(GRAPHS)]
    assert entry == compiled_cache.entry_dir(full_store)
    assert is_converted(full_store)
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["sources"] == full_store.verified_digests()
    for g in GRAPHS:
        data = (entry / g.filename).read_bytes()
        assert manifest["files"][g.filename] == {"sha256": sha256(data), "size": len(data)}
    assert [p.name for p in entry.parent.iterdir()] == [entry.name], "no temp dirs left"

    # Converting again is a no-op: the verified entry is reused.
    again: list[ConversionProgress] = []
    assert convert(full_store, command=standin_exporter, progress=again.append) == entry
    assert again == []

    # A graph whose bytes no longer match the manifest: not converted, and rebuilt.
    renderer = entry / "renderer.onnx"
    renderer.write_bytes(b"X" + renderer.read_bytes()[1:])
    check = check_entry(entry, key=entry.name)
    assert not check.ok and "renderer.onnx: SHA-256 differs from the manifest" in check.problems
    assert not is_converted(full_store)
    assert compiled_cache.converted_dir(full_store) is None
    convert(full_store, command=standin_exporter)
    assert is_converted(full_store)
    assert renderer.read_bytes() == b"renderer" * 100


def test_failed_conversion_reports_stderr_and_keeps_nothing(
    full_store: ModelStore, standin_exporter: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_EXPORTER_MODE", "fail")
    with pytest.raises(ConversionError, match=r"(?s)exit code 3\).*export of velocity failed"):
        convert(full_store, command=standin_exporter)
    root = compiled_cache.cache_root()
    assert not is_converted(full_store)
    assert [p for p in root.iterdir()] == [] if root.exists() else True


def test_cancelled_conversion_stops_the_child(
    full_store: ModelStore, standin_exporter: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_EXPORTER_MODE", "hang")
    cancel = threading.Event()

    def on_progress(p: ConversionProgress) -> None:
        cancel.set()

    with pytest.raises(Cancelled):
        convert(full_store, command=standin_exporter, progress=on_progress, cancel=cancel)
    assert list(compiled_cache.cache_root().iterdir()) == []


# --------------------------------------------------------------------------- the command


def cli(*args: str) -> int:
    return models_cmd.main(["models", *args])


def test_status_json_of_an_empty_store(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("status", "--json", "--store", str(store.root)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["files"]) == set(ALL)
    assert all(not f["present"] and not f["verified"] for f in doc["files"].values())
    assert doc["complete"] is False and doc["converted"] is False
    assert "CPUExecutionProvider" in doc["providers"]


def test_status_human_output(
    store: ModelStore, user_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.import_files([user_folder / "renderer.ckpt"])
    assert cli("--store", str(store.root)) == 0  # no action: status
    out = capsys.readouterr().out
    assert f"Model store      {store.root}" in out
    assert "verified  renderer.ckpt" in out and "missing   generator.ckpt" in out
    assert "Next step        imtalker-cam models download" in out


def test_import_command_without_exporter_keeps_the_files(
    store: ModelStore, user_folder: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(compiled_cache, "exporter_available", lambda: False)
    code = cli("import", str(user_folder), "--store", str(store.root), "--json")
    doc = json.loads(capsys.readouterr().out)
    assert code == models_cmd.EXIT_NOT_CONVERTED
    assert sorted(doc["imported"]) == sorted(ALL) and doc["converted"] is False
    assert "not available" in doc["conversion_error"]
    assert store.status().complete


def test_import_command_then_convert_with_standin_exporter(
    store: ModelStore, user_folder: Path, standin_exporter: list[str],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    real_convert = compiled_cache.convert

    def with_standin(s: ModelStore, **kw: object) -> Path:
        return real_convert(s, command=standin_exporter, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(compiled_cache, "convert", with_standin)
    assert cli("import", str(user_folder), "--store", str(store.root)) == 0
    out = capsys.readouterr()
    assert "Imported and verified" in out.out and "Compiled graphs ready in" in out.out
    assert cli("status", "--json", "--store", str(store.root)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["converted"] is True and doc["complete"] is True


def test_remove_command_needs_confirmation_and_removes_compiled_graphs(
    full_store: ModelStore, standin_exporter: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    entry = convert(full_store, command=standin_exporter)
    root = str(full_store.root)
    assert cli("remove", "--store", root) == models_cmd.EXIT_FAILED  # stdin is not a terminal
    assert full_store.status().complete and entry.exists()
    assert cli("remove", "--store", root, "--yes", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["removed"]) == len(ALL) + 1 and doc["removed_compiled"] == [str(entry)]
    assert not entry.exists() and not full_store.root.exists()


def test_import_command_reports_a_bad_path(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("import", str(tmp_path / "nowhere"), "--store", str(store.root)) == 1
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "Traceback" not in err


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def recipe_checkpoints(recipe_weights: Path) -> Path:
    """The session's recipe-weight checkpoints in the published formats (tests/conftest.py)."""
    return recipe_weights


@pytest.mark.slow
def test_import_recipe_checkpoints_verifies_every_file(
    recipe_checkpoints: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli("import", str(recipe_checkpoints), "--store", str(store.root), "--no-convert")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Imported and verified" in out.out
    assert cli("status", "--json", "--deep", "--store", str(store.root)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(f["present"] and f["verified"] for f in doc["files"].values()), doc["files"]
    assert doc["complete"] is True
    for rel, f in doc["files"].items():
        assert f["size"] == (recipe_checkpoints / rel).stat().st_size


@pytest.mark.slow
def test_import_recipe_checkpoints_then_status_reports_verified_and_converted(
    recipe_checkpoints: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli("import", str(recipe_checkpoints), "--store", str(store.root))
    out = capsys.readouterr()
    assert code == 0, out.err
    assert cli("status", "--json", "--store", str(store.root)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(f["present"] and f["verified"] for f in doc["files"].values()), doc["files"]
    assert doc["converted"] is True
    entry = Path(doc["compiled_dir"])
    for g in GRAPHS:
        assert (entry / g.filename).is_file() and (entry / g.config_filename).is_file()


@pytest.mark.slow
def test_import_v2_recipe_checkpoints_reports_v2(
    recipe_weights_v2: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints in today's (v2) layout, with Lightning extras, pass the inspector and are
    recorded as v2 (their conversion is `recipe_graphs_v2`, shared by the session)."""
    code = cli("import", str(recipe_weights_v2), "--store", str(store.root), "--no-convert")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert cli("status", "--json", "--deep", "--store", str(store.root)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["complete"] is True and doc["model_version"] == "v2"
    record = json.loads(store.record_path.read_text())["files"]
    assert record["renderer.ckpt"]["model_version"] == "v2"
    assert record["generator.ckpt"]["model_version"] == "v2"
