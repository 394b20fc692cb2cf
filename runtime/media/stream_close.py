"""Closing a PortAudio stream for good (on the thread that opened it, holding its owner's lock).

A stream whose device vanished can fail to stop, or to close, or both: each step is tried
whatever the other did, and a failure is only logged, because the caller is already giving the
stream up (to retry, or to stop) and must never be kept from it.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def stop_and_close(stream: Any, *, what: str) -> None:
    """Stop then close `stream` (a sounddevice stream), never raising."""
    for action in (stream.stop, stream.close):
        try:
            action()
        except Exception as exc:
            logger.debug("closing %s: %s", what, exc)
