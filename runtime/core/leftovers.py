"""Temporary files of a process that was killed (any thread): a temp file in use is held, so the
next run can tell a leftover from another process's work in progress and remove it.

On POSIX a writer holds an advisory lock (`flock`) on its open temp file; the lock goes with
the process, whatever kills it. A file nobody holds is a leftover. On Windows an open file
cannot be deleted, so trying to delete it is the same test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import filelock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removed:
    """Leftovers removed: their paths and their size in bytes."""

    paths: tuple[Path, ...] = ()
    size: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.paths + other.paths, self.size + other.size)


def hold(fd: int) -> None:
    """Mark the temp file open at `fd` as in use for as long as this process keeps it open."""
    if sys.platform != "win32":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _in_use(path: Path) -> bool:
    if sys.platform == "win32":
        return False  # unlink below fails for a file another process holds open
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def remove_abandoned(paths: Iterable[Path]) -> Removed:
    """Delete those of `paths` (files) that no live process holds; what was removed."""
    removed: list[Path] = []
    size = 0
    for path in paths:
        if _in_use(path):
            continue
        try:
            bytes_ = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        removed.append(path)
        size += bytes_
    return Removed(tuple(removed), size)


def tree_size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def claim_folder(folder: Path) -> filelock.FileLock:
    """Hold `<folder>.lock` (a sibling) while `folder` is being filled; an abandoned folder's
    lock is free again."""
    lock = filelock.FileLock(str(folder) + ".lock")
    lock.acquire(blocking=False)
    return lock


def remove_abandoned_folder(folder: Path) -> int | None:
    """Delete `folder` and its sibling lock when no live process claims it (`claim_folder`);
    the bytes it held, or None when it is in use (or was never claimed)."""
    lock_path = Path(str(folder) + ".lock")
    if not lock_path.is_file():
        return None
    lock = filelock.FileLock(str(lock_path))
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        return None
    try:
        size = tree_size(folder)
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            lock_path.unlink()
    return size
