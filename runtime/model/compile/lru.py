"""Which compiled-graph cache entries stay (calling thread): all of them while the cache fits
its size cap (the graphs of v1 and v2, of the app's store and of a `--weights` folder, side by
side); past the cap the least recently used go first, never the entry just made or used and
never one another running process holds a lease on (`runtime.model.compile.lease`).

Each use stamps the entry (the modification time of `<entry>/last-used`); an entry never
stamped counts as used when it was made. An entry is deleted by renaming it aside first and
checking its leases again there: a process that leased it in between gets it back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from runtime.model.compile import lease

logger = logging.getLogger(__name__)

USED_FILE = "last-used"


def mark_used(entry: Path) -> None:
    """Stamp `entry` as used now (a read-only cache is left as it is)."""
    stamp = entry / USED_FILE
    with contextlib.suppress(OSError):
        stamp.touch()
        now = time.time()
        os.utime(stamp, (now, now))


def last_used(entry: Path) -> float:
    for path in (entry / USED_FILE, entry):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0


def entry_bytes(entry: Path) -> int:
    total = 0
    for path in entry.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


def evict(entries: Sequence[Path], *, keep: Path, max_bytes: int, trash_prefix: str) -> list[Path]:
    """Delete the least recently used of `entries` until they fit in `max_bytes` (`keep` and
    entries in use are never deleted, even when the rest cannot fit); returns those deleted."""
    sizes = {e: entry_bytes(e) for e in entries}
    total = sum(sizes.values())
    removed: list[Path] = []
    for entry in sorted(entries, key=last_used):
        if total <= max_bytes:
            break
        if entry == keep or lease.in_use(entry):
            continue
        if _delete(entry, trash_prefix):
            logger.info(
                "removed the least recently used compiled graphs %s (%.0f MB; the cache keeps "
                "at most %.1f GB)",
                entry,
                sizes[entry] / 1e6,
                max_bytes / 1e9,
            )
            removed.append(entry)
            total -= sizes[entry]
    if total > max_bytes:
        logger.info(
            "the compiled-graph cache holds %.1f GB, over its %.1f GB cap: the rest is in use",
            total / 1e9,
            max_bytes / 1e9,
        )
    return removed


def _delete(entry: Path, trash_prefix: str) -> bool:
    trash = entry.with_name(f"{trash_prefix}{entry.name}-{secrets.token_hex(4)}")
    try:
        os.replace(entry, trash)
    except OSError:
        return False  # open elsewhere (Windows), or gone
    if lease.in_use(trash):  # leased between the check and the rename: give it back
        with contextlib.suppress(OSError):
            os.replace(trash, entry)
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True
