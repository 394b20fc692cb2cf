"""`imtalker-cam models` (main thread): status, download, import, convert and remove the model.

Human output goes to stdout, progress to stderr (one updating line on a terminal, a line
every few seconds otherwise); `--json` puts one JSON document on stdout instead.
Exit codes: 0 done, 1 failed, 3 the hub cannot be reached (the message says how to install by
hand), 4 the files are in place but conversion failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from runtime.commands.app_folders import check_app_folders
from runtime.core.units import human_bytes, human_duration
from runtime.model import convert_extra
from runtime.model.compile import cache as compiled_cache
from runtime.model.compile.cache import ConversionError, ConversionProgress
from runtime.model.compile.graph_version import GraphVersionError, graphs_version
from runtime.model.compile.weights import WeightsFolder
from runtime.model.contract import GRAPHS
from runtime.model.download.model_download import DownloadOptions, OfflineError, download_model
from runtime.model.store.errors import Cancelled, ModelStoreError
from runtime.model.store.model_store import ModelStore
from runtime.model.store.records import StoreStatus
from runtime.model.transfer import TransferProgress, format_progress

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_OFFLINE = 3
EXIT_NOT_CONVERTED = 4
EXIT_INTERRUPTED = 130


def _add_common(parser: argparse.ArgumentParser, *, default: Any) -> None:
    # The action parsers use SUPPRESS so `models --json status` and `models status --json`
    # both work (a sub-parser's default would otherwise overwrite the outer value).
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="print one JSON document",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        default=default,
        help="model store folder (default: per-user data)",
    )


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, default=argparse.SUPPRESS)
    parser = sub.add_parser(
        "models",
        help="download, import, check, convert or remove the IMTalker model",
        description=(
            "Manage the IMTalker model: the published checkpoints (downloaded from "
            "huggingface.co/cbsjtu01/IMTalker or imported from files) and the ONNX graphs "
            "compiled from them. Without an action: status."
        ),
    )
    _add_common(parser, default=None)
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")

    status = actions.add_parser(
        "status", parents=[common], help="what is present, verified and converted"
    )
    status.add_argument(
        "--deep", action="store_true", help="re-hash every file instead of trusting size+mtime"
    )

    download = actions.add_parser(
        "download", parents=[common], help="download the published checkpoints, then convert"
    )
    download.add_argument("--revision", help="branch, tag or commit (default: pinned)")
    download.add_argument(
        "--endpoint", metavar="URL", help="hub address (default: $HF_ENDPOINT or huggingface.co)"
    )
    download.add_argument(
        "--force", action="store_true", help="download again even if already verified"
    )
    download.add_argument("--retries", type=int, default=5, help="resumptions per file")
    download.add_argument("--no-convert", action="store_true", help="skip the conversion")

    imp = actions.add_parser(
        "import", parents=[common], help="copy checkpoints from a folder or files, then convert"
    )
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    imp.add_argument("--no-convert", action="store_true", help="skip the conversion")
    imp.add_argument(
        "--replace",
        action="store_true",
        help="switch the store to another IMTalker version: the imported renderer.ckpt and "
        "generator.ckpt replace the installed ones (whose recorded digests are forgotten)",
    )

    convert = actions.add_parser(
        "convert", parents=[common], help="compile the checkpoints to ONNX graphs"
    )
    convert.add_argument("--force", action="store_true", help="convert again even if done")
    convert.add_argument(
        "--weights",
        type=Path,
        metavar="DIR",
        help="convert a folder laid out like the published repository instead of the store "
        "(used in place, never written to)",
    )

    remove = actions.add_parser(
        "remove", parents=[common], help="delete the model files and compiled graphs"
    )
    remove.add_argument(
        "--compiled-only", action="store_true", help="only delete the compiled graphs"
    )
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")


# --------------------------------------------------------------------------- output


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _emit_json(doc: dict[str, Any]) -> None:
    _out(json.dumps(doc, indent=2))


class _ProgressLine:
    """Progress on stderr: an updating line on a terminal, else a line every few seconds."""

    def __init__(self, stream: TextIO, *, every: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every = every
        self._last = 0.0
        self._width = 0
        self._key = ""

    def show(self, text: str, *, key: str) -> None:
        now = time.monotonic()
        if self._tty:
            pad = max(0, self._width - len(text))
            self._stream.write("\r" + text + " " * pad)
            self._width = len(text)
        elif key != self._key or now - self._last >= self._every:
            self._stream.write(text + "\n")
            self._last = now
        else:
            return
        self._key = key
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
        self._width = 0

    def transfer(self, p: TransferProgress) -> None:
        self.show(format_progress(p), key=f"{p.phase}:{p.path}")

    def conversion(self, p: ConversionProgress) -> None:
        text = f"converted {p.graph} ({p.done}/{p.total})  {human_duration(p.elapsed)}"
        self.show(text, key=p.graph)


# --------------------------------------------------------------------------- actions


def _providers() -> list[str]:
    try:
        from runtime.model.execution.sessions import SessionOptions, requested_providers
    except ImportError as exc:  # onnxruntime missing or broken
        logger.debug("cannot list providers: %s", exc)
        return []
    return requested_providers(SessionOptions())


def _installed_version(store: ModelStore, compiled: Path | None) -> str | None:
    """What the store's checkpoints are ("v1", "v2"), as recorded when they were verified; for
    a store verified before versions were recorded, what its compiled graphs say."""
    version = store.model_version()
    if version is None and compiled is not None:
        with contextlib.suppress(GraphVersionError):
            version = graphs_version(compiled).name
    return version


def _status_doc(store: ModelStore, status: StoreStatus) -> dict[str, Any]:
    compiled = compiled_cache.converted_dir(store)
    return {
        "store": str(store.root),
        "model_version": _installed_version(store, compiled),
        "repo_id": status.repo_id,
        "revision": status.revision,
        "files": {
            f.path: {
                "present": f.present,
                "verified": f.verified,
                "size": f.size,
                "sha256": f.sha256,
                "problem": f.problem,
            }
            for f in status.files
        },
        "complete": status.complete,
        "notice": status.notice,
        "converted": compiled is not None,
        "compiled_dir": str(compiled) if compiled is not None else None,
        "exporter_available": compiled_cache.exporter_available(),
        "convert_extra_missing": list(convert_extra.missing_modules()),
        "providers": _providers(),
    }


def _print_status(doc: dict[str, Any]) -> None:
    if doc["notice"]:
        _out(f"Notice           {doc['notice']}")
    _out(f"Model store      {doc['store']}")
    if doc["model_version"]:
        _out(f"Model version    IMTalker {doc['model_version']}")
    if doc["revision"]:
        _out(f"Source           {doc['repo_id']} @ {doc['revision']}")
    _out("Files")
    width = max(len(p) for p in doc["files"])
    for path, f in doc["files"].items():
        state = "verified" if f["verified"] else ("present" if f["present"] else "missing")
        size = human_bytes(f["size"]) if f["size"] is not None else ""
        line = f"  {state:<9} {path:<{width}}  {size:>9}"
        if f["present"] and not f["verified"] and f["problem"]:
            line += f"  ({f['problem']})"
        _out(line.rstrip())
    if doc["converted"]:
        _out(f"Compiled graphs  converted ({doc['compiled_dir']})")
    elif not doc["exporter_available"]:
        _out("Compiled graphs  not converted (this installation has no ONNX exporter)")
    elif doc["convert_extra_missing"]:
        _out(f"Compiled graphs  not converted ({convert_extra.hint()})")
    else:
        _out("Compiled graphs  not converted")
    providers = ", ".join(doc["providers"]) or "none (ONNX Runtime is not available)"
    _out(f"Providers        {providers}")
    if not doc["complete"]:
        _out("Next step        imtalker-cam models download   (or: models import FOLDER)")
    elif not doc["converted"]:
        _out("Next step        imtalker-cam models convert")


def _do_status(args: argparse.Namespace, store: ModelStore) -> int:
    doc = _status_doc(store, store.status(deep=args.deep))
    if args.json:
        _emit_json(doc)
    else:
        _print_status(doc)
    return EXIT_OK


def _convert_after(
    args: argparse.Namespace, store: ModelStore, line: _ProgressLine
) -> tuple[int, dict[str, Any]]:
    """Convert after a download or import; a failure keeps the files and says so."""
    if args.no_convert:
        return EXIT_OK, {"converted": compiled_cache.is_converted(store)}
    try:
        path = compiled_cache.convert(store, progress=line.conversion)
    except ConversionError as exc:
        line.close()
        if not args.json:
            _err(f"The model files are in place, but the conversion failed: {exc}")
        return EXIT_NOT_CONVERTED, {"converted": False, "conversion_error": str(exc)}
    line.close()
    if not args.json:
        _out(f"Compiled graphs ready in {path}")
    return EXIT_OK, {"converted": True, "compiled_dir": str(path)}


def _do_download(args: argparse.Namespace, store: ModelStore) -> int:
    options = DownloadOptions(
        revision=args.revision, endpoint=args.endpoint, force=args.force, retries=args.retries
    )
    line = _ProgressLine(sys.stderr)
    try:
        result = download_model(store, options=options, progress=line.transfer)
    finally:
        line.close()
    if not args.json:
        if result.downloaded:
            _out(
                f"Downloaded and verified {len(result.downloaded)} file(s) "
                f"({human_bytes(result.bytes_transferred)}) from commit {result.commit}"
            )
        if result.unchanged:
            _out(f"Already verified: {', '.join(result.unchanged)}")
    code, conv = _convert_after(args, store, line)
    if args.json:
        _emit_json(
            {
                "ok": code == EXIT_OK,
                "commit": result.commit,
                "downloaded": list(result.downloaded),
                "unchanged": list(result.unchanged),
                "bytes": result.bytes_transferred,
                **conv,
            }
        )
    return code


def _do_import(args: argparse.Namespace, store: ModelStore) -> int:
    line = _ProgressLine(sys.stderr)
    try:
        before = store.model_version()
        result = store.import_files(args.paths, progress=line.transfer, replace=args.replace)
    finally:
        line.close()
    after = store.model_version()
    if not args.json:
        if before is not None and after is not None and before != after:
            _out(f"Switched the model from IMTalker {before} to {after}.")
        if result.imported:
            _out(f"Imported and verified: {', '.join(result.imported)}")
        if result.unchanged:
            _out(f"Already in the store: {', '.join(result.unchanged)}")
    complete = store.status().complete
    if not complete:
        missing = store.status().missing
        if args.json:
            _emit_json(
                {
                    "ok": False,
                    "imported": list(result.imported),
                    "unchanged": list(result.unchanged),
                    "missing": list(missing),
                    "converted": False,
                }
            )
        else:
            _err("Still missing: " + ", ".join(missing))
        return EXIT_FAILED
    code, conv = _convert_after(args, store, line)
    if args.json:
        _emit_json(
            {
                "ok": code == EXIT_OK,
                "imported": list(result.imported),
                "unchanged": list(result.unchanged),
                "missing": [],
                "model_version": after,
                **conv,
            }
        )
    return code


def _do_convert(args: argparse.Namespace, store: ModelStore) -> int:
    if args.weights is not None:
        store = WeightsFolder.complete(args.weights)
    line = _ProgressLine(sys.stderr)
    try:
        path = compiled_cache.convert(store, progress=line.conversion, force=args.force)
    except ConversionError:
        line.close()
        raise
    line.close()
    built = {
        g.filename: (path / g.filename).stat().st_size
        for g in GRAPHS
        if (path / g.filename).is_file()
    }
    if args.json:
        _emit_json({"ok": True, "converted": True, "compiled_dir": str(path), "graphs": built})
    else:
        _out(f"Compiled graphs ready in {path}")
        for name, size in built.items():
            _out(f"  {name:<22} {human_bytes(size)}")
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _do_remove(args: argparse.Namespace, store: ModelStore) -> int:
    if args.compiled_only:
        what = "the compiled graphs"
    else:
        what = f"{len(store.own_files())} model file(s) in {store.root} and the compiled graphs"
    if not args.yes and not _confirm(f"Delete {what}?"):
        _err("Nothing was deleted (pass --yes to delete without asking).")
        return EXIT_FAILED
    result = None if args.compiled_only else store.remove()
    removed_files = list(result.removed) if result else []
    not_recorded = list(result.not_recorded) if result else []
    kept = [] if args.compiled_only else [p for p in store.root.rglob("*") if p.is_file()]
    removed_compiled = compiled_cache.remove_entries()
    if args.json:
        _emit_json(
            {
                "ok": True,
                "removed": [str(p) for p in removed_files],
                "removed_compiled": [str(p) for p in removed_compiled],
                "kept": [str(p) for p in kept],
                "not_recorded": [str(p) for p in not_recorded],
            }
        )
    else:
        _out(
            f"Deleted {len(removed_files)} model file(s) and "
            f"{len(removed_compiled)} compiled graph folder(s)."
        )
        if not_recorded:
            _out(
                "Left alone (named like model files, but not downloaded or imported by "
                "imtalker-cam, or changed since): " + ", ".join(str(p) for p in not_recorded)
            )
        others = [p for p in kept if p not in not_recorded]
        if others:
            _out("Left alone (not the store's): " + ", ".join(str(p) for p in others))
    return EXIT_OK


_ACTIONS: dict[str, Callable[[argparse.Namespace, ModelStore], int]] = {
    "status": _do_status,
    "download": _do_download,
    "import": _do_import,
    "convert": _do_convert,
    "remove": _do_remove,
}


def run(args: argparse.Namespace) -> int:
    if args.store is None:
        # A file where the data or cache folder should be: one line naming the variable.
        check_app_folders()
    store = ModelStore(args.store)
    if args.models_action is None:
        args.models_action = "status"
        args.deep = False
    action = _ACTIONS[args.models_action]
    try:
        return action(args, store)
    except (KeyboardInterrupt, Cancelled):
        _err("Interrupted. What was downloaded is kept; run the command again to resume.")
        return EXIT_INTERRUPTED
    except ModelStoreError as exc:
        if args.json:
            _emit_json({"ok": False, "error": str(exc), "kind": type(exc).__name__})
        else:
            _err(f"Error: {exc}")
        if isinstance(exc, OfflineError):
            return EXIT_OFFLINE
        if isinstance(exc, ConversionError):
            return EXIT_NOT_CONVERTED
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run `models ...` alone (for tests and `python -m runtime.commands.models_cmd`)."""
    parser = argparse.ArgumentParser(prog="imtalker-cam")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
