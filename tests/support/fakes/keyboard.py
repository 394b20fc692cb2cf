"""A fake `pynput.keyboard` module: the system-wide keyboard, which tests cannot press.

`Listener` keeps its callbacks; `press(key)`/`release(key)` call them from a thread of their
own, as pynput's listener thread does when a key goes down in another app."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar


@dataclass(frozen=True)
class KeyCode:
    char: str | None

    @classmethod
    def from_char(cls, char: str) -> KeyCode:
        return cls(char)


Key = SimpleNamespace(**{f"f{i}": f"<F{i}>" for i in range(1, 21)}, space="<space>")


class Listener:
    instances: ClassVar[list[Listener]] = []

    def __init__(
        self, *, on_press: Callable[[Any], None], on_release: Callable[[Any], None]
    ) -> None:
        self.on_press, self.on_release = on_press, on_release
        self.running = False
        Listener.instances.append(self)

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def _from_thread(self, call: Callable[[Any], None], key: Any) -> None:
        if not self.running:
            return
        thread = threading.Thread(target=call, args=(key,), name="fake-keyboard")
        thread.start()
        thread.join()

    def press(self, key: Any) -> None:
        self._from_thread(self.on_press, key)

    def release(self, key: Any) -> None:
        self._from_thread(self.on_release, key)


def running() -> Listener | None:
    """The listener that is watching now, if any."""
    return next((lst for lst in reversed(Listener.instances) if lst.running), None)
