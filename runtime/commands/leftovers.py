"""The processes a command started and must not leave behind (the command's main thread):
Ray's per-node agents outlive `ray.shutdown` by minutes, so `serve` notes its descendants while
they run and ends the ones still alive after the shutdown.

Linux only (read from /proc); elsewhere nothing is noted and nothing ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)

Process = tuple[int, str]
"""(pid, start time in clock ticks): a pid reused by another process is not ours."""

PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of `pid`, None when it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), fields[19]


def descendants(pid: int | None = None) -> set[Process]:
    """Every process below `pid` (this one by default), now."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[Process]] = {}
    try:
        entries = [int(e.name) for e in PROC.iterdir() if e.name.isdigit()]
    except OSError:
        return set()
    for child in entries:
        stat = _stat(child)
        if stat is not None:
            children.setdefault(stat[0], []).append((child, stat[1]))
    found: set[Process] = set()
    todo = [root]
    while todo:
        for proc in children.get(todo.pop(), []):
            if proc not in found:
                found.add(proc)
                todo.append(proc[0])
    return found


def _alive(proc: Process) -> bool:
    stat = _stat(proc[0])
    return stat is not None and stat[1] == proc[1]


def end_leftovers(procs: set[Process], *, grace_s: float = 3.0) -> int:
    """SIGTERM to those of `procs` still alive, SIGKILL to any left after `grace_s`; how many
    were still alive."""
    alive = [p for p in procs if _alive(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while alive and time.monotonic() < deadline:
            _reap(alive)
            alive = [p for p in alive if _alive(p)]
            if alive:
                time.sleep(0.05)
        if not alive:
            break
    if alive:
        logger.warning("%d processes did not end: %s", len(alive), [p for p, _ in alive])
    return len(alive)


def _reap(procs: list[Process]) -> None:
    """Collect those of `procs` that are our own children and ended (a zombie still shows)."""
    for pid, _ in procs:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
