"""A guard against PySide6 wheels that under-count references to None, True and False
(runs once, when `desktop_app` is imported).

PySide6 6.12.0 on Python 3.11 returns None from every void C++ call (`update()`,
`setText()`, ...) and True from `Signal.emit()` without taking the reference its caller then
releases. Python 3.12 made these objects immortal, which hides the fault there; on 3.11 each
call costs one reference, a live preview makes hundreds a second, and after a minute or two
the interpreter aborts ("none_dealloc: deallocating None"). The fix is a PySide6 without the
fault (6.11 has none). Until every install has one, this module checks once whether the
running PySide6 loses references and, only then, does what Python 3.12 does: it gives the
three objects a reference count so large that no number of lost references can exhaust it.
They are never freed anyway, so nothing else changes.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

from PySide6.QtCore import QObject, Signal

logger = logging.getLogger(__name__)

SINGLETONS = (None, True, False)
BOOST = 1 << 40  # a trillion lost references, at a thousand a second: 35 years


class _Probe(QObject):
    ping = Signal(int)


def _counts() -> list[int]:
    return [sys.getrefcount(obj) for obj in SINGLETONS]


def pyside_leaks(rounds: int = 32) -> bool:
    """Whether void calls or emits from Python lose references (checked on a scratch object)."""
    probe = _Probe()
    before = _counts()
    for _ in range(rounds):
        probe.setObjectName("probe")  # a void C++ call: returns None
        probe.ping.emit(0)  # returns True
    lost = [b - a for b, a in zip(before, _counts(), strict=True)]
    return max(lost) >= rounds


def _can_boost() -> bool:
    """CPython before 3.12 (immortal objects since), release build (ob_refcnt comes first)."""
    return (
        platform.python_implementation() == "CPython"
        and sys.version_info < (3, 12)
        and not hasattr(sys, "gettotalrefcount")
    )


_installed = False


def install() -> bool:
    """Protect the interpreter if this PySide6 needs it (once per process); True if it did."""
    global _installed
    if _installed:
        return True
    if not _can_boost() or not pyside_leaks():
        return False
    for obj in SINGLETONS:
        ctypes.c_ssize_t.from_address(id(obj)).value += BOOST
    _installed = True
    logger.info("this PySide6 under-counts references to None/True/False; made them immortal")
    return True
