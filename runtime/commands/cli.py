"""`imtalker-cam` command line (main thread).

With no arguments it opens the desktop app; subcommands run headless. Each subcommand lives
in its own module under `runtime.commands` and registers itself with `add_parser`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from runtime.commands import bench, doctor, live, models_cmd, render, serve
from runtime.commands.boundary import guarded

logger = logging.getLogger(__name__)

_COMMANDS = (doctor, render, live, models_cmd, bench, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imtalker-cam",
        description=(
            "Turn one portrait photo into a live, talking virtual camera. "
            "Run without a command to open the desktop app."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--check-startup",
        action="store_true",
        help="open the desktop app and quit as soon as its window is shown (checks an install)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        return _run_gui(quit_when_shown=args.check_startup)

    def run() -> int:
        code: int = args.func(args)
        return code

    return guarded(args.command, run, argv=list(argv) if argv is not None else None)


def _run_gui(*, quit_when_shown: bool) -> int:
    # The GUI is imported lazily by name so that `runtime` keeps no import of Qt.
    import importlib

    try:
        app_module = importlib.import_module("desktop_app.app")
    except ImportError as exc:
        logger.error("the desktop app cannot start: %s", exc)
        return 1
    code: int = app_module.run(sys.argv[:1], quit_when_shown=quit_when_shown)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
