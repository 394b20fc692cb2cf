"""Files that may be damaged on disk (any thread): JSON read with a one-line reason for what
is wrong with it, and a damaged file renamed aside, kept for inspection.

The settings file and the model store's record both use these, so a file that is not UTF-8,
not JSON or nested too deeply is described and kept the same way wherever it is read.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def parse_json(data: bytes) -> Any:
    """`data` as UTF-8 JSON; ValueError with a one-line reason when it is not (not UTF-8
    text, not valid JSON, nested too deeply for the parser)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def set_aside(path: Path, name: Callable[[str], str]) -> Path | None:
    """Rename `path` to `name(stamp)` in its folder, where stamp is the local time
    (`YYYYmmdd-HHMMSS`, then `-1`, `-2`... when taken): never over an earlier one. None when
    it cannot be renamed (logged)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        aside = path.with_name(name(stamp + (f"-{n}" if n else "")))
        if aside.exists():
            continue
        try:
            os.replace(path, aside)
        except OSError as exc:
            logger.warning("cannot set the damaged %s aside: %s", path, exc)
            return None
        return aside
    return None
