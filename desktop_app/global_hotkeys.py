"""System-wide push-to-talk and mute keys (GUI thread; the listener runs on its own thread).

Letting go of the app counts as letting go of an in-window key, so push-to-talk cannot work
while the call app has the focus. Where the platform allows, `pynput` (an optional dependency,
`pip install imtalker-cam[hotkeys]`) watches the keyboard system-wide: Windows, macOS (once
the app is allowed under Privacy & Security › Accessibility) and Linux on X11. Wayland does
not let an app see keys typed into other apps, so there `support()` says why and the window's
own keys are the only ones. The listener only compares each key with the two chosen keys and
reports those; nothing typed is kept.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

logger = logging.getLogger(__name__)

INSTALL_HINT = "install the optional hotkeys support: pip install 'imtalker-cam[hotkeys]'"


@dataclass(frozen=True)
class HotkeySupport:
    available: bool
    reason: str | None  # why not, for the user


def support(
    *,
    platform: str = sys.platform,
    environ: Mapping[str, str] = os.environ,
    importer: Callable[[str], Any] = importlib.import_module,
) -> HotkeySupport:
    """Whether system-wide keys can work here, and why not when they cannot."""
    if platform.startswith("linux"):
        wayland = environ.get("XDG_SESSION_TYPE") == "wayland" or bool(
            environ.get("WAYLAND_DISPLAY")
        )
        if wayland:
            return HotkeySupport(
                False,
                "Wayland does not let apps see keys pressed in other apps: the keys work while "
                "this window has the focus (or log in to an X11 session).",
            )
        if not environ.get("DISPLAY"):
            return HotkeySupport(False, "No X11 display to watch the keyboard on.")
    try:
        importer("pynput.keyboard")
    except Exception as exc:  # missing, or its backend cannot load (no X libraries...)
        logger.info("system-wide keys unavailable: %s", exc)
        return HotkeySupport(False, f"System-wide keys need pynput: {INSTALL_HINT}.")
    return HotkeySupport(True, None)


def key_matcher(keyboard: Any, portable: str) -> Callable[[Any], bool] | None:
    """A test for pynput key objects equal to `portable` (QKeySequence portable text: "F8",
    "M", "Space"); None for a key that cannot be watched system-wide."""
    text = portable.strip()
    if not text or "+" in text:
        return None  # no key, or a combination: only single keys are watched
    if len(text) == 1:
        wanted = text.lower()
        return lambda key: str(getattr(key, "char", None) or "").lower() == wanted
    named = getattr(keyboard.Key, text.lower(), None)
    if named is None:
        return None
    return lambda key: bool(key == named)


class GlobalKeys(QObject):
    """Reports presses and releases of the watched keys system-wide, as Qt signals (queued
    to the GUI thread). `keyboard` is the `pynput.keyboard` module (a fake in tests)."""

    pressed = Signal(str)  # the key's portable text, as given to watch()
    released = Signal(str)

    def __init__(self, keyboard: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._keyboard = keyboard
        self._listener: Any = None
        self._watched: list[tuple[str, Callable[[Any], bool]]] = []
        self._down: set[str] = set()

    @property
    def running(self) -> bool:
        return self._listener is not None

    def watch(self, keys: list[str]) -> list[str]:
        """Watch these keys (restarting the listener); returns those that cannot be watched."""
        self.stop()
        self._watched = []
        refused = []
        for name in dict.fromkeys(k for k in keys if k):
            matcher = key_matcher(self._keyboard, name)
            if matcher is None:
                refused.append(name)
            else:
                self._watched.append((name, matcher))
        if self._watched:
            self._listener = self._keyboard.Listener(
                on_press=self._on_press, on_release=self._on_release
            )
            self._listener.start()
        return refused

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._down.clear()

    def _name(self, key: Any) -> str | None:
        return next((name for name, matches in self._watched if matches(key)), None)

    def _on_press(self, key: Any) -> None:
        """The listener's thread."""
        name = self._name(key)
        if name is not None and name not in self._down:  # held keys repeat their press
            self._down.add(name)
            self.pressed.emit(name)

    def _on_release(self, key: Any) -> None:
        """The listener's thread."""
        name = self._name(key)
        if name is not None:
            self._down.discard(name)
            self.released.emit(name)


def load_keyboard() -> Any:
    """The `pynput.keyboard` module (call only after `support()` said it is available)."""
    return importlib.import_module("pynput.keyboard")
