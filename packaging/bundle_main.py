"""The desktop bundle's entry point (main thread): the `imtalker-cam` command, as the
package's console script runs it (PyInstaller freezes this file; see imtalker-cam.spec)."""

from __future__ import annotations

import sys

from runtime.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
