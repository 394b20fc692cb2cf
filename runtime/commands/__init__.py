"""Subcommands of `imtalker-cam`, one module each (main thread)."""
