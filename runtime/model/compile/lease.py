"""Leases on compiled-graph cache entries, so that no process deletes graphs another running
process is using (any thread: the leases this process holds are process-wide).

A process that uses an entry holds a lease on it until it exits: a file
`<entry>/leases/<pid>-<random>.lease`, kept open with an exclusive OS lock (`fcntl.flock` on
POSIX, `msvcrt.locking` on Windows). An OS lock rather than a pid + heartbeat file, because the
operating system drops the lock when the process ends, however it ends (a crash, `kill -9`), so
a lease never outlives its process; no clock, heartbeat interval or reused pid decides whether a
lease is alive, and nothing is rewritten while the app runs. Whoever would delete an entry tries
each lease's lock first (`in_use`): one it can take is left over from a process that has gone
and is deleted; one it cannot take means the entry is in use.

A new lease is created under a pending name, locked, then renamed into place (POSIX keeps the
lock across the rename): should a check take the pending file for a leftover in the moment
before it is locked and delete it, the rename fails and the lease is not taken (the caller
does not use the entry). On Windows, where an open file can be neither renamed nor deleted, it
is created in place: there the open file itself keeps an evictor from deleting it or its
folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

LEASES_DIR = "leases"
_SUFFIX = ".lease"
_PENDING = ".pending-"

_held: dict[Path, IO[bytes]] = {}
_held_lock = threading.Lock()


def _try_lock(f: IO[bytes]) -> bool:
    """Take the file's exclusive lock without waiting; False when another process holds it."""
    try:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(f: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def hold(entry: Path) -> bool:
    """Lease `entry` for the rest of this process (again: nothing more). False when the entry
    is not there (or was moved away meanwhile): then it must not be used."""
    key = entry.absolute()
    with _held_lock:
        if key in _held:
            if (key / LEASES_DIR).is_dir():
                return True
            _held.pop(key).close()  # the entry was deleted under us (by hand): lease it anew
        leases = key / LEASES_DIR
        try:
            leases.mkdir(exist_ok=True)
        except (FileNotFoundError, NotADirectoryError):
            return False
        name = f"{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        pending = leases / (name if sys.platform == "win32" else _PENDING + name)
        try:
            f = open(pending, "a+b")  # noqa: SIM115  (held open for the process's life)
        except OSError as exc:
            logger.warning("could not lease the compiled graphs in %s: %s", key, exc)
            return key.is_dir()  # a read-only cache: nothing can evict there either
        if not _try_lock(f):
            f.close()
            return False
        final = leases / name
        try:
            if pending != final:
                os.replace(pending, final)
        except OSError:
            _unlock(f)
            f.close()
            return False
        if not final.exists():  # the entry was moved away for eviction meanwhile
            _unlock(f)
            f.close()
            return False
        _held[key] = f
        return True


def release(entry: Path) -> None:
    """Give up this process's lease on `entry` (if any)."""
    key = entry.absolute()
    with _held_lock:
        f = _held.pop(key, None)
    if f is None:
        return
    path = Path(f.name)
    _unlock(f)
    f.close()
    with contextlib.suppress(OSError):
        path.unlink()


def held() -> list[Path]:
    """The entries this process holds leases on."""
    with _held_lock:
        return list(_held)


def in_use(entry: Path) -> bool:
    """Whether a live process (this one included) holds a lease on `entry`; leftover leases of
    processes that have gone are deleted on the way."""
    if entry.absolute() in held():
        return True
    leases = entry / LEASES_DIR
    try:
        names = sorted(p for p in leases.iterdir() if p.name.endswith(_SUFFIX))
    except (FileNotFoundError, NotADirectoryError):
        return False
    for path in names:
        try:
            f = open(path, "r+b")  # noqa: SIM115
        except FileNotFoundError:
            continue
        except OSError:
            return True  # open elsewhere (Windows) or unreadable: assume in use
        with f:
            if not _try_lock(f):
                return True
            try:
                path.unlink()  # left over from a process that has gone
            except OSError:
                return True
            finally:
                _unlock(f)
    return False
