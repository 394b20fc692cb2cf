"""A lock on a folder between processes that leaves no file behind (any thread; re-entrant
within one instance, whatever thread holds it).

On POSIX the folder itself is locked (`flock` on its descriptor), so nothing appears in it; the
lock goes with the process, whatever kills it. Windows cannot lock a folder: a hidden lock file
in it stands in.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import filelock

WINDOWS_LOCK_FILE = ".lock"


class FolderLock:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._mutex = threading.Lock()
        self._depth = 0
        self._fd: int | None = None
        self._file_lock: filelock.FileLock | None = None

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self, *, blocking: bool = True, cancelled: threading.Event | None = None) -> bool:
        """True once held (at once when this instance holds it already); False when
        `blocking` is off and another holds it, or `cancelled` was set while waiting."""
        while True:
            with self._mutex:
                if self._depth > 0 or self._try():
                    self._depth += 1
                    return True
            if not blocking or (cancelled is not None and cancelled.is_set()):
                return False
            time.sleep(0.05)

    def release(self) -> None:
        with self._mutex:
            if self._depth == 0:
                return
            self._depth -= 1
            if self._depth == 0:
                self._unlock()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _try(self) -> bool:
        if sys.platform == "win32":
            lock = filelock.FileLock(str(self.folder / WINDOWS_LOCK_FILE), thread_local=False)
            try:
                lock.acquire(blocking=False)
            except filelock.Timeout:
                return False
            self._file_lock = lock
            return True
        import fcntl

        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _unlock(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops its lock
        if self._file_lock is not None:
            lock, self._file_lock = self._file_lock, None
            lock.release()
