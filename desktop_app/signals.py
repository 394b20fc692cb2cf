"""Emitting Qt signals from Python (any thread): always through `emit()`, never `.emit()`.

PySide6 6.12.0's `SignalInstance.emit` returns `True` without taking a reference to it, so
each discarded result releases one reference the interpreter never gave out. On Python 3.11,
where `True` is an ordinary object (3.12 made it immortal), the app's ~1800 references to
`True` are gone after as many emits and the interpreter aborts ("bool_dealloc: deallocating
True or False"): about a minute of live preview. `emit()` gives the reference back when the
running PySide6 is found to have the fault, and does nothing extra otherwise, so the
workaround is safe with a fixed PySide6 too.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal, SignalInstance

ctypes.pythonapi.Py_IncRef.argtypes = [ctypes.py_object]
ctypes.pythonapi.Py_IncRef.restype = None


class _Probe(QObject):
    ping = Signal(int)


def _emit_drops_a_reference(rounds: int = 16) -> bool:
    """Whether emitting from Python costs `True` one reference per call (checked once)."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(rounds):
        probe.ping.emit(0)
    lost = before - sys.getrefcount(True)
    if lost > 0:
        for _ in range(lost):
            ctypes.pythonapi.Py_IncRef(True)  # give back what the probe took
    return lost >= rounds


_COMPENSATE = _emit_drops_a_reference()


def emit(signal: SignalInstance, *args: Any) -> None:
    """`signal.emit(*args)`, without PySide6 6.12.0's reference leak on the result."""
    result: Any = signal.emit(*args)  # type: ignore[func-returns-value]  # it returns True
    if _COMPENSATE and result is True:
        ctypes.pythonapi.Py_IncRef(True)


def emitter(signal: SignalInstance) -> Any:
    """A callable that emits `signal` with its arguments (to connect or pass as a callback)."""

    def fire(*args: Any) -> None:
        emit(signal, *args)

    return fire
