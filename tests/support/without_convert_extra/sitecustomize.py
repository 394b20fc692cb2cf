"""Put this folder first on PYTHONPATH and the interpreter behaves as an install without the
`convert` extra: importing torch, onnx or onnxconverter-common (or any of their submodules)
raises ModuleNotFoundError, as it does where they were never installed.

Python runs `sitecustomize` at start-up (main thread, before any of the program's imports);
tests use it on child processes only, so nothing already imported can hide the absence.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

BLOCKED = ("torch", "onnx", "onnxconverter_common")


class _Absent:
    """A meta-path finder ahead of all others that refuses the blocked packages."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.split(".", 1)[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Absent)
