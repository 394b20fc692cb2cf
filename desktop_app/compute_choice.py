"""Where the model runs, as chosen in the Compute group (GUI thread): the choice goes to the
settings and applies from the next Go Live; changing it while live says so."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject

from desktop_app.compute_panel import ComputePanel
from desktop_app.live_bridge import LiveState
from desktop_app.settings import Compute
from desktop_app.window_context import WindowContext


class ComputeChoice(QObject):
    def __init__(
        self,
        panel: ComputePanel,
        *,
        ctx: WindowContext,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._ctx = ctx
        panel.compute_changed.connect(self._changed)

    def _changed(self, compute: Compute) -> None:
        if compute.url and not compute.url.startswith(("ws://", "wss://")):
            compute = replace(compute, url="")  # not saved: the note asks for a usable one
        self._ctx.settings.update(replace(self._ctx.settings.settings, compute=compute))
        if self._ctx.bridge.state != LiveState.IDLE:
            self._ctx.messages.status("The compute choice applies from the next Go Live.", 6000)
