"""`imtalker-cam models` (main thread). Not available yet: a later issue fills it in."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("models", help="(not available yet)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logger.error("`imtalker-cam models` is not available yet in this version")
    return 2
