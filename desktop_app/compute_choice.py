"""Where the model runs, as chosen in the Compute group (GUI thread): the choice goes to the
settings and applies from the next Go Live; changing it while live says so."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject

from desktop_app.compute_panel import ComputePanel
from desktop_app.live_bridge import EngineBridge, LiveState
from desktop_app.settings import Compute
from desktop_app.user_messages import UserMessages
from desktop_app.window_settings import WindowSettings


class ComputeChoice(QObject):
    def __init__(
        self,
        panel: ComputePanel,
        *,
        bridge: EngineBridge,
        settings: WindowSettings,
        messages: UserMessages,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._settings = settings
        self._messages = messages
        panel.compute_changed.connect(self._changed)

    def _changed(self, compute: Compute) -> None:
        if compute.url and not compute.url.startswith(("ws://", "wss://")):
            compute = replace(compute, url="")  # not saved: the note asks for a usable one
        self._settings.update(replace(self._settings.settings, compute=compute))
        if self._bridge.state != LiveState.IDLE:
            self._messages.status("The compute choice applies from the next Go Live.", 6000)
