"""An audio file decoded once per Go Live (whatever thread checks and starts: in the app both
run on the bridge's worker, one after the other).

Go Live decodes the file first to say early when it cannot be played (before the "not real
time" question), then starts the session, which needs the same samples. `CheckedFile` keeps
the check's samples and hands them to the next load, once, while the file is unchanged (same
resolved path, device, inode, size and modification time); a file changed or replaced since
the check is decoded again. The samples are handed over rather than cached so that no
recording stays in memory after the session that played it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Stamp:
    path: Path
    device: int
    inode: int
    size: int
    mtime_ns: int


def _stamp(path: Path) -> _Stamp | None:
    try:
        resolved = path.resolve()
        st = resolved.stat()
    except OSError:
        return None  # the decode says why the file cannot be read
    return _Stamp(resolved, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class CheckedFile:
    """`check(path)` decodes and keeps the samples; `load(path)` hands them over when the
    file is unchanged since, else decodes it."""

    def __init__(self, decode: Callable[[Path], Samples]) -> None:
        self._decode = decode
        self._lock = threading.Lock()
        self._kept: tuple[_Stamp, Samples] | None = None

    def check(self, path: Path) -> None:
        """Decode `path` (raising what the decoder raises) and keep the samples for `load`."""
        with self._lock:
            self._kept = None  # a failed or newer check never leaves an older file's samples
        stamp = _stamp(path)  # before decoding: a change during the decode counts as one
        samples = self._decode(path)
        if stamp is not None:
            with self._lock:
                self._kept = (stamp, samples)

    def load(self, path: Path) -> Samples:
        """The samples of `path`: the last check's when the file is unchanged since, else a
        fresh decode."""
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is not None and kept[0] == _stamp(path):
            return kept[1]
        if kept is not None:
            logger.debug("%s changed since the check: decoding it again", path)
        return self._decode(path)
