"""What every controller of the main window is given (built and used on the GUI thread): the
live bridge, the settings and the way to tell the user something."""

from __future__ import annotations

from dataclasses import dataclass

from desktop_app.live_bridge import EngineBridge
from desktop_app.user_messages import UserMessages
from desktop_app.window_settings import WindowSettings


@dataclass(frozen=True)
class WindowContext:
    bridge: EngineBridge
    settings: WindowSettings
    messages: UserMessages
