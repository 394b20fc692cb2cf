"""The commands' top-level error boundary and stop signals (the CLI's main thread).

`guarded` runs one subcommand so that nothing but one line reaches the terminal: an exception
that escapes the command becomes a sentence naming the file or setting involved plus the path
of a log file holding the full traceback, and a non-zero exit. The log file goes to the
per-user log folder; when that folder is unusable (a file in its place, no permission, a full
disk) to the system's temporary folder; when that fails too, the message says so.

SIGTERM and SIGHUP are turned into `Terminated` (a BaseException, like KeyboardInterrupt), so
every `with`/`finally` on the way out runs: a render deletes its temporary file and leaves
nothing at OUT, a live session stops its threads and closes its recording.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import platformdirs

from runtime.core import paths
from runtime.core.validate import ValidationError

logger = logging.getLogger(__name__)

EXIT_INPUT = 1
EXIT_INTERNAL = 70  # EX_SOFTWARE: something the command did not expect
EXIT_INTERRUPTED = 130


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; the command unwinds as for Ctrl-C, exit 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_terminating = False


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Only the first signal unwinds: a second one must not cut the clean-up short.
    global _terminating
    if _terminating:
        return
    _terminating = True
    raise Terminated(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP raise `Terminated` in the main thread while the block runs."""
    global _terminating
    _terminating = False
    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {}
    for sig in wanted:
        with contextlib.suppress(ValueError, OSError):  # not the main thread / not allowed
            previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)


def log_dir() -> Path:
    """Where crash logs go: beside the cache when IMTALKER_CACHE_DIR is set (tests), else the
    platform's per-user log folder."""
    if os.environ.get("IMTALKER_CACHE_DIR"):
        return paths.cache_dir() / "logs"
    return Path(platformdirs.user_log_dir(paths.APP_NAME, appauthor=False))


def write_crash_log(text: str, *, folders: list[Path] | None = None) -> tuple[Path | None, str]:
    """Write `text` to a new log file in the first usable folder; (path, "") or (None, why)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"error-{stamp}-{os.getpid()}.log"
    candidates = folders if folders is not None else [log_dir(), _temp_log_dir()]
    reasons: list[str] = []
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / name
            with open(target, "x", encoding="utf-8") as f:
                f.write(text)
            return target, ""
        except OSError as exc:
            reasons.append(f"{folder}: {exc.strerror or exc}")
    return None, "; ".join(reasons)


def _temp_log_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"{paths.APP_NAME}-logs"


def describe(exc: BaseException) -> str:
    """One line for an unexpected exception, naming the file involved when there is one."""
    if isinstance(exc, MemoryError):
        return "ran out of memory; try smaller values (for example --batch 1) or close programs"
    if isinstance(exc, OSError):
        name = exc.filename if exc.filename is not None else ""
        where = f"{name}: " if name else ""
        code = exc.errno
        if code == errno.EFBIG:
            return (
                f"{where}the file grew past the largest size allowed here (a file-size limit, "
                "ulimit -f, or the file system's own limit); write to another disk or folder"
            )
        if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return f"{where}the disk is full; free some space or choose another folder"
        if isinstance(exc, PermissionError):
            return f"{where}permission denied"
        if isinstance(exc, NotADirectoryError):
            return f"{where}a part of this path is a file, not a folder"
        if isinstance(exc, IsADirectoryError):
            return f"{where}is a folder, not a file"
        if isinstance(exc, FileNotFoundError):
            return f"{where}not found"
        return f"{where}{exc.strerror or exc}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def guarded(command: str, run: Callable[[], int], *, argv: list[str] | None = None) -> int:
    """Run a command inside the boundary and the stop signals; return its exit code."""
    try:
        with stop_signals():
            return run()
    except KeyboardInterrupt:
        logger.error("interrupted")
        return EXIT_INTERRUPTED
    except Terminated as exc:
        logger.error("%s", exc)
        return exc.exit_code
    except ValidationError as exc:
        logger.error("%s", exc)
        return EXIT_INPUT
    except Exception as exc:
        details = "".join(traceback.format_exception(exc))
        header = f"imtalker-cam {command} failed\nargv: {argv if argv is not None else sys.argv}\n"
        log_path, why = write_crash_log(header + details)
        where = (
            f"full details in {log_path}" if log_path else f"no log file could be written ({why})"
        )
        logger.error("%s failed: %s (%s)", command, describe(exc), where)
        return EXIT_INPUT if isinstance(exc, OSError | MemoryError) else EXIT_INTERNAL
