"""Subcommands of `imtalker-cam`, one module each, and the entry point `cli` (main thread).

The top layer: may use every other `runtime` subpackage; nothing in `runtime` imports it.
"""
