"""The PySide6 desktop app (a thin layer over `runtime/`)."""

from desktop_app import pyside_guard

pyside_guard.install()
