"""Downloading the model from a local stand-in for the hub (127.0.0.1; no test uses the network):
full download, resumption after a dropped connection, corruption, disk full, offline."""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import close_session

from runtime.commands import models_cmd
from runtime.model.download import hub_fetch, model_download
from runtime.model.download.model_download import (
    DownloadError,
    DownloadOptions,
    OfflineError,
    download_model,
)
from runtime.model.store.errors import Cancelled, DiskFullError, VerificationError
from runtime.model.store.model_store import ModelStore
from runtime.model.store.records import MANIFEST, ExpectedFile
from runtime.model.transfer import TransferProgress
from tests.support.hub_server import COMMIT, FakeHub, closed_port, read_tree, sha256, standin_files

ALL = [e.path for e in MANIFEST]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any attempt to resolve a host other than the loopback one."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def loopback_only(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("127.0.0.1", "localhost", "::1", b"127.0.0.1"):
            attempts.append(str(host))
            raise OSError(f"test tried to reach {host}")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield
    assert attempts == [], f"a test tried to use the network: {attempts}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("IMTALKER_MODEL_REVISION", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    close_session()  # a fresh HTTP client that sees the environment above
    yield
    close_session()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def options(hub: FakeHub, **overrides: object) -> DownloadOptions:
    base: dict[str, object] = {
        "endpoint": hub.url,
        "retry_wait": 0.01,
        "progress_interval": 0.0,
    }
    base.update(overrides)
    return DownloadOptions(**base)  # type: ignore[arg-type]


def recorded_digests(store: ModelStore) -> dict[str, tuple[str, int, str]]:
    files = json.loads(store.record_path.read_text())["files"]
    return {k: (v["sha256"], v["size"], v["first_verified"]) for k, v in files.items()}


def assert_store_holds(store: ModelStore, files: dict[str, bytes]) -> None:
    status = store.status(deep=True)
    assert status.complete, status
    for rel, data in files.items():
        assert store.path(rel).read_bytes() == data
    leftovers = [p.name for p in store.root.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers


def test_full_download_verifies_records_and_reports_progress(store: ModelStore) -> None:
    files = standin_files()
    events: list[TransferProgress] = []

    def on_progress(p: TransferProgress) -> None:
        # Nothing is ever at a final path while it is being transferred.
        if p.file_total is not None and p.file_done < p.file_total:
            assert not store.path(p.path).exists()
        events.append(p)
        # A loopback transfer of stand-in files is over before a speed can be measured
        # (0.2 s); a slow listener makes the transfer last long enough to show speed and ETA.
        time.sleep(0.03)  # real: only makes the transfer longer; load cannot make it fail

    with FakeHub(files) as hub:
        result = download_model(store, options=options(hub), progress=on_progress)

    assert result.commit == COMMIT
    assert sorted(result.downloaded) == sorted(ALL)
    assert result.bytes_transferred == sum(len(d) for d in files.values())
    assert_store_holds(store, files)
    record = json.loads(store.record_path.read_text())
    assert record["revision"] == COMMIT and record["repo_id"] == "cbsjtu01/IMTalker"
    for rel, data in files.items():
        assert record["files"][rel]["sha256"] == sha256(data)
        assert record["files"][rel]["source"] == f"download cbsjtu01/IMTalker@{COMMIT}"

    done = [e.done for e in events]
    assert done == sorted(done), "overall progress never goes backwards"
    assert events[-1].done == events[-1].total == result.bytes_transferred
    assert {e.path for e in events} == set(ALL)
    assert all(e.speed is None or e.speed >= 0 for e in events)
    assert any(e.speed and e.eta is not None for e in events)


def test_cdn_redirect_download_and_pinned_commit(store: ModelStore) -> None:
    files = standin_files()
    with FakeHub(files, cdn=True) as hub:
        download_model(store, options=options(hub))
        cdn_gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET"]
        assert {r.path for r in cdn_gets} == {hub.blob_path(p) for p in files if "json" not in p}
        # The store is now on the commit `main` resolved to; later requests name that commit.
        store.path("renderer.ckpt").unlink()
        hub.requests.clear()
        result = download_model(store, options=options(hub))
        heads = [r.path for r in hub.requests if r.method == "HEAD"]
        assert heads and all(f"/resolve/{COMMIT}/" in h for h in heads)
    assert result.downloaded == ("renderer.ckpt",)
    assert len(result.unchanged) == len(ALL) - 1
    assert_store_holds(store, files)


def test_second_download_transfers_nothing(store: ModelStore) -> None:
    files = standin_files()
    with FakeHub(files) as hub:
        download_model(store, options=options(hub))
        hub.requests.clear()
        result = download_model(store, options=options(hub))
        assert hub.gets("") == []
    assert result.downloaded == () and result.bytes_transferred == 0


def test_connection_cut_mid_file_is_resumed_in_the_same_call(store: ModelStore) -> None:
    files = standin_files()
    with FakeHub(files, cut_after={"renderer.ckpt": [100_000, 50_000]}) as hub:
        download_model(store, options=options(hub, retries=3))
        ranges = [r.range for r in hub.gets("/renderer.ckpt")]
    assert ranges == [None, "bytes=100000-", "bytes=150000-"]
    assert_store_holds(store, files)


def test_download_cut_mid_file_then_resumed_by_the_next_call(store: ModelStore) -> None:
    files = standin_files()
    size = len(files["renderer.ckpt"])
    with FakeHub(files, cut_after={"renderer.ckpt": [123_456]}) as hub:
        with pytest.raises(DownloadError, match=r"interrupted.*run the download again"):
            download_model(store, options=options(hub, retries=0))
        assert not store.path("renderer.ckpt").exists()
        assert store.partial_path("renderer.ckpt").stat().st_size == 123_456
        done_first = {rel for rel in ALL if store.path(rel).exists()}

        hub.requests.clear()
        seen: list[TransferProgress] = []
        result = download_model(store, options=options(hub, retries=0), progress=seen.append)
        gets = {r.path.split(f"/resolve/{COMMIT}/", 1)[-1]: r.range for r in hub.gets("")}
    # The interrupted file resumes where it stopped; files finished before are not fetched.
    assert gets["renderer.ckpt"] == "bytes=123456-"
    assert set(gets) == set(ALL) - done_first
    assert all(rng is None for rel, rng in gets.items() if rel != "renderer.ckpt")
    rest = sum(len(files[rel]) for rel in gets if rel != "renderer.ckpt")
    assert result.bytes_transferred == size - 123_456 + rest
    assert seen[-1].done == seen[-1].total
    assert_store_holds(store, files)


def test_server_ignoring_range_restarts_the_file_cleanly(store: ModelStore) -> None:
    files = standin_files()
    with FakeHub(files, cut_after={"generator.ckpt": [70_000]}, ignore_range=True) as hub:
        download_model(store, options=options(hub, retries=2))
        assert [r.range for r in hub.gets("/generator.ckpt")] == [None, "bytes=70000-"]
    assert_store_holds(store, files)


def test_corrupted_byte_is_detected_and_the_file_removed(store: ModelStore) -> None:
    files = standin_files()
    with FakeHub(files, corrupt={"renderer.ckpt"}) as hub:
        with pytest.raises(VerificationError) as info:
            download_model(store, options=options(hub))
        message = str(info.value)
        assert "renderer.ckpt" in message and "SHA-256" in message and "deleted" in message
        assert not store.path("renderer.ckpt").exists()
        assert not store.partial_path("renderer.ckpt").exists()
        assert not store.partial_info_path("renderer.ckpt").exists()

        hub.corrupt.clear()
        result = download_model(store, options=options(hub))
    assert "renderer.ckpt" in result.downloaded
    assert_store_holds(store, files)


def test_corrupted_small_file_fails_its_git_blob_id(store: ModelStore) -> None:
    files = standin_files()
    rel = "wav2vec2-base-960h/config.json"
    with FakeHub(files, corrupt={rel}) as hub, pytest.raises(VerificationError, match="git blob"):
        download_model(store, options=options(hub))
    assert not store.path(rel).exists()


def test_pinned_digest_mismatch_deletes_the_download(tmp_path: Path) -> None:
    files = standin_files()
    rel = "wav2vec2-base-960h/preprocessor_config.json"
    manifest = [
        ExpectedFile(e.path, e.kind, e.description, sha256="0" * 64) if e.path == rel else e
        for e in MANIFEST
    ]
    store = ModelStore(tmp_path / "store", manifest=manifest)
    with FakeHub(files) as hub, pytest.raises(VerificationError, match="published"):
        download_model(store, options=options(hub))
    assert not store.path(rel).exists() and not store.partial_path(rel).exists()


def test_file_differing_from_the_first_verified_digest_is_refused(store: ModelStore) -> None:
    first = standin_files()
    with FakeHub(first) as hub:
        download_model(store, options=options(hub))
    before = read_tree(store.root)
    changed = standin_files(seed=5)
    with FakeHub(changed, commit="f" * 40) as hub:
        with pytest.raises(VerificationError, match=r"first verified.*models remove"):
            download_model(store, options=options(hub, revision="main", force=True))
        assert hub.gets("") == [], "refused before any byte was downloaded"
    assert read_tree(store.root) == before


def test_disk_full_during_write_leaves_the_previous_store_intact(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = standin_files()
    with FakeHub(files) as hub:
        download_model(store, options=options(hub))
        before = read_tree(store.root)
        record_before = recorded_digests(store)

        written = 0
        real_write_all = hub_fetch.write_all

        def filling_write_all(f: object, data: bytes) -> None:
            nonlocal written
            written += len(data)
            if written > 250_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write_all(f, data)  # type: ignore[arg-type]

        monkeypatch.setattr(hub_fetch, "write_all", filling_write_all)
        with pytest.raises(DiskFullError, match="left as they were"):
            download_model(store, options=options(hub, force=True))
    # A forced re-download replaced some files by identical ones before the disk filled up:
    # the bytes, the file list and the recorded digests are what they were.
    after = read_tree(store.root)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k != "store.json"} == {
        k: v for k, v in before.items() if k != "store.json"
    }
    assert recorded_digests(store) == record_before
    assert store.status(deep=True).complete


def test_not_enough_free_space_is_said_before_downloading(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_download, "_free_space", lambda path: 1_000_000)
    with FakeHub(standin_files()) as hub:
        with pytest.raises(DiskFullError, match=r"only 1\.0 MB is free"):
            download_model(store, options=options(hub))
        assert hub.gets("") == []


def test_cancel_keeps_the_partial_file_and_the_next_call_resumes(store: ModelStore) -> None:
    files = standin_files()
    cancel = threading.Event()

    def on_progress(p: TransferProgress) -> None:
        if p.path == "renderer.ckpt" and p.file_done >= 64 * 1024:
            cancel.set()

    with FakeHub(files) as hub:
        with pytest.raises(Cancelled):
            download_model(store, options=options(hub), progress=on_progress, cancel=cancel)
        assert not store.path("renderer.ckpt").exists()
        kept = store.partial_path("renderer.ckpt").stat().st_size
        assert kept >= 64 * 1024
        hub.requests.clear()
        download_model(store, options=options(hub))
        assert [r.range for r in hub.gets("/renderer.ckpt")] == [f"bytes={kept}-"]
    assert_store_holds(store, files)


def test_refused_connection_gives_the_offline_message(store: ModelStore) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(OfflineError) as info:
        download_model(store, options=DownloadOptions(endpoint=endpoint))
    message = str(info.value)
    assert f"Cannot reach the model repository at {endpoint}" in message
    for rel in ALL:
        assert rel in message
        assert f"{endpoint}/cbsjtu01/IMTalker/resolve/main/{rel}" in message
    assert "imtalker-cam models import FOLDER" in message
    assert not store.root.exists()


def test_unknown_revision_is_not_reported_as_offline(store: ModelStore) -> None:
    with FakeHub(standin_files()) as hub, pytest.raises(DownloadError) as info:
        download_model(store, options=options(hub, revision="v9"))
    assert not isinstance(info.value, OfflineError)
    assert "revision 'v9'" in str(info.value) and "models import" in str(info.value)


def test_cli_download_offline_exit_code_and_no_traceback(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    code = models_cmd.main(
        ["models", "download", "--endpoint", endpoint, "--store", str(store.root)]
    )
    out = capsys.readouterr()
    assert code == models_cmd.EXIT_OFFLINE
    assert "Traceback" not in out.err + out.out
    assert "Cannot reach the model repository" in out.err
    assert "imtalker-cam models import FOLDER" in out.err


def test_cli_download_json_then_status_json(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    files = standin_files()
    with FakeHub(files) as hub:
        code = models_cmd.main(
            ["models", "download", "--endpoint", hub.url, "--store", str(store.root),
             "--no-convert", "--json"]
        )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["ok"] and doc["commit"] == COMMIT and sorted(doc["downloaded"]) == sorted(ALL)
    assert doc["converted"] is False

    assert models_cmd.main(["models", "status", "--json", "--store", str(store.root)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["complete"] is True and status["revision"] == COMMIT
    assert all(f["present"] and f["verified"] for f in status["files"].values())
    assert status["converted"] is False
    assert "CPUExecutionProvider" in status["providers"]
