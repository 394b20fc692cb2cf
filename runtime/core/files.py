"""File-system helpers for writes that must never leave a half-written file (any thread).

Every final path is written through a hidden temp file in the same folder, flushed, fsync'ed
and renamed into place; disk-full is recognised by errno.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO

_ENOSPC = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in _ENOSPC


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX; Windows has no directory fsync)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: The longest file name (bytes) of the common file systems (ext4, APFS, NTFS in UTF-16 units).
NAME_MAX = 255


def fit_name(name: str, *, extra: int) -> str:
    """`name` cut (at a character boundary) so that `extra` more bytes still fit NAME_MAX: a
    temporary name built from a long legal file name must not be refused as too long."""
    room = NAME_MAX - extra
    encoded = os.fsencode(name)
    if len(encoded) <= room:
        return name
    return encoded[: max(room, 1)].decode("utf-8", errors="ignore") or "_"


def hidden_temp_name(final_name: str, suffix: str) -> str:
    """`.{final_name}{suffix}` within NAME_MAX (the final name shortened where needed)."""
    return f".{fit_name(final_name, extra=1 + len(os.fsencode(suffix)))}{suffix}"


def temp_path(final: Path, tag: str) -> Path:
    """A unique hidden temp name next to `final`, so the rename into place is atomic."""
    return final.with_name(hidden_temp_name(final.name, f".{tag}{secrets.token_hex(4)}.tmp"))


def atomic_write_bytes(final: Path, data: bytes) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final, "")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def write_all(f: BinaryIO, data: bytes) -> None:
    """Write every byte; the one place store payloads are written (disk-full is raised here)."""
    view = memoryview(data)
    while view:
        written = f.write(view)
        if written is None or written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def free_space(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (its nearest existing ancestor)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None
