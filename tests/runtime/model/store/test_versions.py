"""The model store checks checkpoints before it trusts them (issue 17, class 2) and keeps one
model version: small checkpoints with every real key and shape (tests/support), the real
checkpoint inspector in its child process, the real store and `models` command."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from runtime.commands import models_cmd
from runtime.model.store.errors import ModelVersionConflictError, VerificationError
from runtime.model.store.model_store import ModelStore
from tests.support.hub_server import read_tree, standin_files, write_tree
from tests.support.malicious_checkpoints import MarkerPayload, with_payload
from tests.support.skeleton_checkpoints import skeleton_checkpoint


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def cli(*args: str) -> int:
    return models_cmd.main(["models", *args])


def _flip_a_weight_byte(data: bytes) -> bytes:
    """One bit of one tensor's bytes changed, deep inside the zip (not in any header)."""
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as archive:
        member = max(archive.infolist(), key=lambda m: m.file_size)
        offset = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    at = offset + member.file_size // 2
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def test_malicious_renderer_into_an_empty_store_is_not_stored_or_pinned(
    store: ModelStore, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    folder = write_tree(tmp_path / "evil", standin_files())
    with_payload(folder / "renderer.ckpt", MarkerPayload(marker))
    with pytest.raises(VerificationError, match=r"renderer.ckpt: it was refused.*run code"):
        store.import_files([folder])
    assert not marker.exists(), "nothing from the file ran"
    assert read_tree(store.root) == {}, "nothing stored, nothing pinned"
    assert store.pinned_sha256("renderer.ckpt") is None

    # The genuine file is then accepted (it was not locked out by a pinned bad digest).
    genuine = write_tree(tmp_path / "genuine", standin_files())
    store.import_files([genuine])
    assert store.status(deep=True).complete and store.model_version() == "v1"


def test_flipped_byte_generator_into_an_empty_store_is_not_stored_or_pinned(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = standin_files()
    files["generator.ckpt"] = _flip_a_weight_byte(files["generator.ckpt"])
    folder = write_tree(tmp_path / "flipped", files)
    code = cli("import", str(folder), "--store", str(store.root), "--no-convert")
    err = capsys.readouterr().err
    assert code != 0
    assert "generator.ckpt: it is damaged: a checksum" in err and "Traceback" not in err
    assert read_tree(store.root) == {}
    assert (folder / "generator.ckpt").read_bytes() == files["generator.ckpt"], "user file kept"

    genuine = write_tree(tmp_path / "genuine", standin_files())
    store.import_files([genuine])
    assert store.status(deep=True).complete


def test_a_checkpoint_of_no_known_version_is_refused_with_a_short_sentence(
    store: ModelStore, tmp_path: Path
) -> None:
    files = standin_files()
    wrong = {"state_dict": {"gen.some.layer.weight": torch.ones(3, 3)}}
    folder = write_tree(tmp_path / "odd", files)
    torch.save(wrong, folder / "renderer.ckpt")
    with pytest.raises(VerificationError) as err:
        store.import_files([folder])
    message = str(err.value)
    assert "matches no IMTalker version" in message and "Re-download" in message
    assert len(message) < 400, "key lists go to the log, not the message"
    assert read_tree(store.root) == {}


def test_a_mixed_pair_is_refused_before_anything_is_stored(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = standin_files()
    files["renderer.ckpt"] = skeleton_checkpoint("renderer", version="v2", seed=1)
    folder = write_tree(tmp_path / "mixed", files)
    code = cli("import", str(folder), "--store", str(store.root))
    err = capsys.readouterr().err
    assert code != 0
    assert "renderer checkpoint is IMTalker v2 but the generator checkpoint is v1" in err
    assert "Traceback" not in err
    assert read_tree(store.root) == {}


def test_v2_import_status_and_a_deliberate_switch_to_v1(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = write_tree(tmp_path / "v2", standin_files(version="v2"))
    assert cli("import", str(v2), "--store", str(store.root), "--no-convert") == 0
    capsys.readouterr()
    assert cli("status", "--json", "--store", str(store.root)) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == "v2"
    before = read_tree(store.root)

    # One file of the other version over the installed model: refused, nothing changes.
    # The other release: new renderer and generator, the same wav2vec2 files (as published).
    files = standin_files(seed=5, version="v1")
    files.update({k: v for k, v in standin_files(version="v2").items() if "wav2vec2" in k})
    v1 = write_tree(tmp_path / "v1", files)
    with pytest.raises(ModelVersionConflictError, match=r"holds IMTalker v2.*--replace"):
        store.import_files([v1 / "generator.ckpt"])
    # The whole other version without --replace: refused too (trust on first use).
    with pytest.raises(VerificationError):
        store.import_files([v1])
    # --replace with only one of the two checkpoints: refused, never mixed.
    with pytest.raises(ModelVersionConflictError, match="together"):
        store.import_files([v1 / "renderer.ckpt"], replace=True)
    assert read_tree(store.root) == before

    assert cli("import", str(v1), "--replace", "--store", str(store.root), "--no-convert") == 0
    assert "Switched the model from IMTalker v2 to v1" in capsys.readouterr().out
    assert store.model_version() == "v1" and store.status(deep=True).complete
    record = json.loads(store.record_path.read_text())["files"]
    assert record["renderer.ckpt"]["model_version"] == "v1"
    assert (store.root / "renderer.ckpt").read_bytes() == (v1 / "renderer.ckpt").read_bytes()


def test_status_of_an_empty_store_has_no_version(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("status", "--json", "--store", str(store.root)) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] is None


def test_the_inspector_runs_in_a_child_process(store: ModelStore, tmp_path: Path) -> None:
    """runtime/ never imports torch: the checks ran elsewhere."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; "
        "from runtime.model.store.model_store import ModelStore; "
        f"ModelStore(Path({str(tmp_path / 's')!r})).import_files([Path({str(tmp_path / 'f')!r})]);"
        " print('torch' in sys.modules)"
    )
    write_tree(tmp_path / "f", standin_files())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[4])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_cache_key_is_the_file_contents_alone() -> None:
    """One key per set of file contents (issue 24): v1 and v2 differ by their checkpoints'
    digests, never by how the files were referenced or what was recorded about them."""
    from runtime.model.compile.cache import cache_key

    v1 = {"renderer.ckpt": "a" * 64, "generator.ckpt": "b" * 64}
    v2 = {"renderer.ckpt": "a" * 64, "generator.ckpt": "c" * 64}
    assert cache_key(v1) == cache_key(dict(reversed(list(v1.items()))))
    assert cache_key(v1) != cache_key(v2)


def test_replace_keeps_the_other_files_digests(store: ModelStore, tmp_path: Path) -> None:
    """--replace switches the versioned checkpoints only: a different wav2vec2 file is still
    refused by its recorded digest, and nothing changes."""
    store.import_files([write_tree(tmp_path / "v1", standin_files())])
    before = read_tree(store.root)
    other = standin_files(seed=4, version="v2")
    with pytest.raises(VerificationError, match=r"wav2vec2-base-960h/.*first verified"):
        store.import_files([write_tree(tmp_path / "v2", other)], replace=True)
    assert read_tree(store.root) == before
