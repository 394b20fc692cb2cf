"""The `convert` extra (torch, onnx, onnxconverter-common): whether this interpreter has it
and the one sentence that says what to install where it does not (any thread; nothing is
imported to find out).

Only the child processes that read checkpoints need it: the exporter (`models.export`) and
the checkpoint inspector (`models.inspect_checkpoint`). Running compiled graphs does not.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from importlib import util as importlib_util

MODULES = ("torch", "onnx", "onnxconverter_common")

HINT = (
    "reading and converting the model's checkpoints needs PyTorch and ONNX, which this "
    'installation lacks: install them with `pip install "imtalker-cam[convert]"` (with pipx: '
    "`pipx inject imtalker-cam torch onnx onnxconverter-common`) and try again"
)

BUNDLE_HINT = (
    "this desktop bundle runs converted models but cannot read or convert checkpoints: set "
    'the model up once with the Python package (`pipx install "imtalker-cam[convert]"`, then '
    "`imtalker-cam models download`), whose per-user folders the bundle shares"
)

_MISSING = re.compile(r"No module named '(torch|onnx|onnxconverter_common)[.']")


def hint() -> str:
    """What to do, for this installation: a frozen bundle cannot add packages to itself."""
    return BUNDLE_HINT if getattr(sys, "frozen", False) else HINT


def missing_modules() -> tuple[str, ...]:
    """The extra's modules this interpreter cannot find."""
    missing = []
    for name in MODULES:
        try:
            found = importlib_util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or blocked install counts as absent
            found = False
        if not found:
            missing.append(name)
    return tuple(missing)


def missing_in_output(lines: Iterable[str]) -> tuple[str, ...]:
    """The extra's modules a child process failed to import, from its error output."""
    return tuple(sorted({m.group(1) for m in map(_MISSING.search, lines) if m}))
