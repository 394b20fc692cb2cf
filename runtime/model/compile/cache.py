"""The compiled-graph cache: the ONNX graphs exported once from the store's checkpoints.

Runs on the calling thread. Conversion runs the exporter (`models.export`, the only code that
needs torch) in a child process; two reader threads drain its output and the calling thread
gets the progress callbacks.

Layout: `<cache>/<key>/` holds `<graph>.onnx` and `<graph>.json` for every graph of
`runtime.model.contract.GRAPHS` (plus any external-data files the exporter writes) and
`manifest.json`, which records the SHA-256 and size of every file and the model version the
graphs are of (from their config JSON). The key is a hash of the SHA-256 of every file the
loader reads (the verified published files plus any safetensors conversion the loader prefers,
`runtime.model.loader_files`), `EXPORTER_VERSION` and `OPSET`: one key per set of file
contents, however they are referenced (imported into the store, or a `--weights` folder), so
new weights, a stray file or a new export recipe get a new entry and the same files never
convert twice. (The model version is not part of it: the contents decide it. An entry made
when the key also carried the store's recorded version is still found.) The exporter reports
the digest of each file it read (`sources.json`); graphs built from any file the key does not
cover, or of another model version than the store recorded, are refused. An entry whose files
do not match its manifest is not converted: it is rebuilt, never loaded.

Several entries live side by side (v1 and v2, the app's and the command line's) while the
cache fits its size cap (`IMTALKER_CACHE_MAX_GB`, default `DEFAULT_MAX_GB`); past it the least
recently used go first (`runtime.model.compile.lru`). An entry handed out for use
(`converted_dir`, `convert`) is leased for the rest of the process
(`runtime.model.compile.lease`): no other process deletes it meanwhile.

Exporter interface (the child process):
    python -m models.export --weights STORE_DIR --out OUT_DIR
writes the graphs into OUT_DIR (an empty temp dir; renamed into place only after it succeeds
and its files are hashed) and prints progress to stdout as JSON lines
`{"graph": "renderer", "done": 3, "total": 6}`; other lines are logged. Exit code 0 = success.

The exporter needs the `convert` extra (torch, onnx, onnxconverter-common); without it
`convert` raises `ConvertExtraMissing`, whose message is the one sentence saying what to install
(checked here before starting the child, and recognised in the child's error output too).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import IO, Any

from runtime.core import paths
from runtime.core.files import atomic_write_bytes, fsync_dir
from runtime.core.leftovers import claim_folder, remove_abandoned_folder
from runtime.core.units import human_bytes
from runtime.model import convert_extra, loader_files
from runtime.model.child_env import child_env, project_root
from runtime.model.compile import lease, lru
from runtime.model.compile.graph_version import GraphVersionError, graphs_version
from runtime.model.contract import EXPORTER_VERSION, FP16_GRAPHS, GRAPHS, OPSET
from runtime.model.files import sha256_file
from runtime.model.store.errors import Cancelled, ModelStoreError
from runtime.model.store.model_store import ModelStore

logger = logging.getLogger(__name__)

EXPORTER_MODULE = "models.export"
MANIFEST_FILE = "manifest.json"
ENTRY_FORMAT = 1
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_STALE_TMP_SECONDS = 24 * 3600
MAX_GB_ENV = "IMTALKER_CACHE_MAX_GB"
DEFAULT_MAX_GB = 10.0
"""The cache's size cap: room for the graphs of both model versions (a few GB each, fp32 and
fp16) and a spare set."""


class ConversionError(ModelStoreError):
    """Conversion failed; no entry was written (a previous valid entry is kept)."""


class SourceChangedError(ConversionError):
    """The exporter read a file with another digest than the key holds."""

    def __init__(self, message: str, *, relpath: str, digest: str) -> None:
        super().__init__(message)
        self.relpath = relpath
        self.digest = digest


class ExporterUnavailable(ConversionError):
    """This installation has no ONNX exporter (`models.export`)."""


class ConvertExtraMissing(ExporterUnavailable):
    """The exporter is there but the `convert` extra (torch, onnx) is not installed."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(convert_extra.hint())
        self.missing = tuple(missing)


@dataclass(frozen=True)
class ConversionProgress:
    graph: str
    done: int
    total: int
    elapsed: float  # seconds since the child process started


ConversionCallback = Callable[[ConversionProgress], None]


@dataclass(frozen=True)
class EntryCheck:
    path: Path
    ok: bool
    problems: tuple[str, ...]


def cache_root() -> Path:
    """`<user cache dir>/compiled`; `IMTALKER_CACHE_DIR` replaces the user cache dir."""
    return paths.cache_dir() / "compiled"


def cache_key(source_digests: Mapping[str, str]) -> str:
    """The entry for the graphs of these files (relative path -> SHA-256)."""
    fields: dict[str, Any] = {
        "sources": dict(sorted(source_digests.items())),
        "exporter_version": EXPORTER_VERSION,
        "opset": OPSET,
    }
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _legacy_key(source_digests: Mapping[str, str], model_version: str | None) -> str | None:
    """The key entries of an imported store had while it also carried the recorded model
    version: their graphs are the same, so they are used rather than converted again."""
    if model_version is None:
        return None
    fields: dict[str, Any] = {
        "sources": dict(sorted(source_digests.items())),
        "exporter_version": EXPORTER_VERSION,
        "opset": OPSET,
        "model_version": model_version,
    }
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def max_bytes() -> int:
    """The cache's size cap in bytes (`IMTALKER_CACHE_MAX_GB`, else `DEFAULT_MAX_GB`)."""
    text = os.environ.get(MAX_GB_ENV, "").strip()
    try:
        gb = float(text) if text else DEFAULT_MAX_GB
    except ValueError:
        logger.warning("%s=%r is not a number; using %g GB", MAX_GB_ENV, text, DEFAULT_MAX_GB)
        gb = DEFAULT_MAX_GB
    if not gb > 0 or gb == float("inf"):
        logger.warning("%s=%r is out of range; using %g GB", MAX_GB_ENV, text, DEFAULT_MAX_GB)
        gb = DEFAULT_MAX_GB
    return int(gb * 1e9)


def required_files() -> tuple[str, ...]:
    graphs = tuple(name for g in GRAPHS for name in (g.filename, g.config_filename))
    return graphs + tuple(g.fp16_filename for g in GRAPHS if g.name in FP16_GRAPHS)


# Hashing a GB of graphs on every check is wasteful; a file whose size and mtime are unchanged
# since this process hashed it is not re-read.
_digest_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """SHA-256 of `path`, not re-read while its size and mtime are those this process hashed."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _memo_lock:
        known = _digest_memo.get(key)
    if known is not None:
        return known
    digest = sha256_file(path)
    with _memo_lock:
        _digest_memo[key] = digest
    return digest


def check_entry(path: Path, *, key: str | None = None) -> EntryCheck:
    """Whether `path` is a complete entry whose files match the hashes it recorded."""
    problems: list[str] = []
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except FileNotFoundError:
        return EntryCheck(path, False, ("not converted",))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return EntryCheck(path, False, (f"unreadable {MANIFEST_FILE}: {exc}",))
    if manifest.get("format") != ENTRY_FORMAT:
        problems.append(f"entry format {manifest.get('format')!r}, expected {ENTRY_FORMAT}")
    if key is not None and manifest.get("key") != key:
        problems.append("entry belongs to other weights or another exporter version")
    for name in required_files():
        if name not in files:
            problems.append(f"{name} missing from the manifest")
    for name, meta in sorted(files.items()):
        file = path / name
        try:
            if file.stat().st_size != int(meta["size"]):
                problems.append(f"{name}: size differs from the manifest")
            elif file_digest(file) != meta["sha256"]:
                problems.append(f"{name}: SHA-256 differs from the manifest")
        except FileNotFoundError:
            problems.append(f"{name}: missing")
        except (OSError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    return EntryCheck(path, not problems, tuple(problems))


def source_digests(store: ModelStore) -> dict[str, str] | None:
    """SHA-256 of every file the loader would read from the store (None while it is
    incomplete): the verified published files plus any file the loader prefers to them."""
    digests = store.verified_digests()
    if digests is None:
        return None
    for relpath in loader_files.chosen(store.root).values():
        if relpath not in digests:
            digests[relpath] = file_digest(loader_files.local_path(store.root, relpath))
    return digests


def entry_dir(store: ModelStore, *, root: Path | None = None) -> Path | None:
    """Where the store's graphs are (or would be); None while the store is incomplete."""
    digests = source_digests(store)
    if digests is None:
        return None
    return (root or cache_root()) / cache_key(digests)


def _usable(store: ModelStore, root: Path | None) -> Path | None:
    """The verified entry of the store's files (under their key, or the legacy one)."""
    digests = source_digests(store)
    if digests is None:
        return None
    root = root or cache_root()
    path = root / cache_key(digests)
    check = check_entry(path, key=path.name)
    if check.ok:
        return path
    legacy = _legacy_key(digests, store.model_version())
    if legacy is not None and check_entry(root / legacy, key=legacy).ok:
        return root / legacy
    if path.exists():
        logger.warning("compiled graphs in %s are not usable: %s", path, "; ".join(check.problems))
    return None


def _use(path: Path) -> Path | None:
    """Lease `path` for this process and stamp it used; None when it went meanwhile."""
    if not lease.hold(path):
        return None
    lru.mark_used(path)
    return path


def converted_dir(store: ModelStore, *, root: Path | None = None) -> Path | None:
    """The verified entry to load graphs from, or None if the store is not converted. The
    entry is leased for the rest of this process: no other process deletes it."""
    path = _usable(store, root)
    return None if path is None else _use(path)


def is_converted(store: ModelStore, *, root: Path | None = None) -> bool:
    """Whether the store's graphs are in the cache (nothing is leased)."""
    return _usable(store, root) is not None


def exporter_available() -> bool:
    """Whether `models.export` can be run, found without importing anything."""
    if (project_root() / "models" / "export.py").is_file():
        return True
    spec = importlib_util.find_spec("models")
    locations = spec.submodule_search_locations if spec is not None else None
    return any((Path(loc) / "export.py").is_file() for loc in locations or ())


def _pump(stream: IO[str], sink: Callable[[str], None]) -> None:
    for line in stream:
        sink(line.rstrip("\r\n"))


def _parse_progress(line: str, started: float) -> ConversionProgress | None:
    try:
        raw: Any = json.loads(line)
        return ConversionProgress(
            graph=str(raw["graph"]),
            done=int(raw["done"]),
            total=int(raw["total"]),
            elapsed=time.monotonic() - started,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _run_exporter(
    argv: Sequence[str],
    *,
    progress: ConversionCallback | None,
    cancel: threading.Event | None,
) -> None:
    logger.info("converting: %s", " ".join(argv))
    started = time.monotonic()
    lines: queue.Queue[str | None] = queue.Queue()
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def keep_stderr(line: str) -> None:
        tail.append(line)
        logger.debug("exporter: %s", line)

    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=child_env(),
    ) as proc:
        code = _supervise(proc, lines, keep_stderr, started, progress=progress, cancel=cancel)
    if code != 0:
        absent = convert_extra.missing_in_output(tail)
        if absent:
            # The child's interpreter lacks the extra even where this one found it (another
            # environment on its path): the same one sentence, not a traceback.
            raise ConvertExtraMissing(absent)
        detail = "\n".join(tail) or "(no error output)"
        raise ConversionError(f"the exporter failed (exit code {code}):\n{detail}")


def _supervise(
    proc: subprocess.Popen[str],
    lines: queue.Queue[str | None],
    keep_stderr: Callable[[str], None],
    started: float,
    *,
    progress: ConversionCallback | None,
    cancel: threading.Event | None,
) -> int:
    """Relay the child's progress until it exits; stop it on cancel or on any error here."""
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    def pump_stdout() -> None:
        try:
            _pump(stdout, lines.put)
        finally:
            lines.put(None)

    readers = [
        threading.Thread(target=pump_stdout, name="exporter-stdout", daemon=True),
        threading.Thread(
            target=_pump, args=(stderr, keep_stderr), name="exporter-stderr", daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    try:
        finished = False
        while not finished:
            if cancel is not None and cancel.is_set():
                raise Cancelled("conversion cancelled")
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                finished = True
                continue
            event = _parse_progress(line, started)
            if event is None:
                logger.info("exporter: %s", line)
            elif progress is not None:
                progress(event)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in readers:
            reader.join(timeout=5)


def _check_sources(tmp: Path, sources: Mapping[str, str]) -> None:
    """The exporter must have read only files the key covers, with the digests it covers."""
    try:
        raw = json.loads((tmp / loader_files.SOURCES_FILE).read_text(encoding="utf-8"))
        read = {str(k): str(v) for k, v in dict(raw).items()}
    except (OSError, ValueError, TypeError) as exc:
        raise ConversionError(
            f"the exporter did not say which files it read ({loader_files.SOURCES_FILE}: "
            f"{exc}); its graphs were not kept"
        ) from exc
    for relpath, digest in sorted(read.items()):
        if relpath not in sources:
            raise ConversionError(
                f"the exporter read {relpath}, which is not among the files the compiled "
                "graphs are keyed by; its graphs were not kept"
            )
        if sources[relpath] != digest:
            raise SourceChangedError(
                f"{relpath} changed while it was being converted; its graphs were not kept. "
                "Run the conversion again.",
                relpath=relpath,
                digest=digest,
            )


def _seal(tmp: Path, *, key: str, sources: Mapping[str, str], model_version: str | None) -> None:
    """Hash what the exporter wrote and record it, making the files durable first."""
    missing = [name for name in required_files() if not (tmp / name).is_file()]
    if missing:
        raise ConversionError(f"the exporter did not write {', '.join(missing)}")
    _check_sources(tmp, sources)
    try:
        exported = graphs_version(tmp).name
    except GraphVersionError as exc:
        raise ConversionError(str(exc)) from None
    if model_version is not None and exported != model_version:
        raise ConversionError(
            f"the exporter built IMTalker {exported} graphs from checkpoints recorded as "
            f"{model_version}"
        )
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        name = path.relative_to(tmp).as_posix()
        if name == MANIFEST_FILE:
            continue
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    manifest = {
        "format": ENTRY_FORMAT,
        "key": key,
        "exporter_version": EXPORTER_VERSION,
        "opset": OPSET,
        "model_version": exported,
        "sources": dict(sorted(sources.items())),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": files,
    }
    atomic_write_bytes(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2).encode() + b"\n")


def _place(tmp: Path, final: Path) -> None:
    """Rename the sealed temp dir to its final name, replacing a bad entry if any."""
    if final.exists():
        trash = final.with_name(f"{_TRASH_PREFIX}{final.name}-{secrets.token_hex(4)}")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _own_entries(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        if not path.is_dir():
            continue
        if path.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
            out.append(path)
            continue
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
            if isinstance(manifest, dict) and "format" in manifest and "files" in manifest:
                out.append(path)
    return out


def _prune(root: Path, *, keep: Path) -> None:
    """Drop abandoned temp dirs, then the least recently used entries not in use while the
    cache is over its cap (`keep`, the entry just made, stays)."""
    now = time.time()
    entries = []
    for path in _own_entries(root):
        if path == keep:
            continue
        if not path.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
            entries.append(path)
            continue
        if path.name.startswith(_TMP_PREFIX) and now - path.stat().st_mtime < _STALE_TMP_SECONDS:
            continue  # maybe another conversion in progress
        if lease.in_use(path):
            continue  # set aside by another process's eviction, and leased meanwhile: it goes back
        logger.info("removing stale compiled graphs %s", path)
        shutil.rmtree(path, ignore_errors=True)
    lru.evict([*entries, keep], keep=keep, max_bytes=max_bytes(), trash_prefix=_TRASH_PREFIX)


def _remove_abandoned_conversions(root: Path) -> None:
    """The temporary folders of conversions that were killed (their claim is free), whatever
    their age; those of running conversions stay."""
    for path in root.glob(f"{_TMP_PREFIX}*"):
        if not path.is_dir():
            continue
        size = remove_abandoned_folder(path)
        if size is not None:
            logger.warning(
                "removed %s left by an interrupted conversion (%s)", path, human_bytes(size)
            )


def remove_entries(*, root: Path | None = None) -> list[Path]:
    """Delete every compiled entry this app wrote under the cache root (nothing else), but
    those a running process is using (they are named in the log)."""
    root = root or cache_root()
    removed = []
    for path in _own_entries(root):
        lease.release(path)  # this process asked for it; only others' use keeps an entry
        if lease.in_use(path):
            logger.warning("kept %s: a running imtalker-cam is using it", path)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    with contextlib.suppress(OSError):
        root.rmdir()
    return removed


def convert(
    store: ModelStore,
    *,
    progress: ConversionCallback | None = None,
    cancel: threading.Event | None = None,
    root: Path | None = None,
    force: bool = False,
    command: Sequence[str] | None = None,
) -> Path:
    """Export the store's checkpoints to ONNX once; returns the verified entry directory.

    `command` replaces `[sys.executable, "-m", "models.export"]` (the arguments `--weights`
    and `--out` are appended). Raises `ExporterUnavailable`, `ConversionError`, `Cancelled`.
    """
    digests = source_digests(store)
    if digests is None:
        missing = ", ".join(store.status().missing)
        raise ConversionError(
            f"the model files are not all present and verified (missing or unverified: "
            f"{missing}); run `imtalker-cam models download` or `models import` first"
        )
    root = root or cache_root()
    model_version = store.model_version()
    key = cache_key(digests)
    final = root / key
    if not force:
        found = _usable(store, root)
        used = None if found is None else _use(found)
        if used is not None:
            return used
    else:
        lease.release(final)
        if lease.in_use(final):
            raise ConversionError(
                f"the compiled graphs in {final} are in use by a running imtalker-cam; stop it "
                "before converting them again"
            )
    if command is None:
        absent = convert_extra.missing_modules()
        if absent:
            raise ConvertExtraMissing(absent)
        if not exporter_available():
            raise ExporterUnavailable(
                "the ONNX exporter (models.export) is not available in this installation, "
                "so the model cannot be converted yet"
            )
        command = [sys.executable, "-m", EXPORTER_MODULE]
    paths.check_root(root, what=paths.label("compiled-graph cache", paths.CACHE_ENV))
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_conversions(root)
    tmp = root / f"{_TMP_PREFIX}{key}-{secrets.token_hex(4)}"
    claim = claim_folder(tmp)  # held while converting: a killed conversion's folder is free
    tmp.mkdir()
    try:
        _run_exporter(
            [*command, "--weights", str(store.root), "--out", str(tmp)],
            progress=progress,
            cancel=cancel,
        )
        try:
            _seal(tmp, key=key, sources=digests, model_version=model_version)
        except SourceChangedError as exc:
            # Changed since it was verified (not during the conversion): say so, and how to
            # restore it; the store remembers, so `models status` no longer calls it verified.
            changed = store.found_changed(exc.relpath, exc.digest)
            if changed is None:
                raise
            raise ConversionError(f"{changed}. Its graphs were not kept.") from None
        _place(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        claim.release()
        with contextlib.suppress(OSError):
            Path(claim.lock_file).unlink()
    check = check_entry(final, key=key)
    if not check.ok:
        raise ConversionError(f"the converted graphs failed their check: {check.problems}")
    if _use(final) is None:
        raise ConversionError(f"the converted graphs in {final} were removed meanwhile")
    _prune(root, keep=final)
    logger.info("compiled graphs ready in %s", final)
    return final
