"""The virtual camera's state in the status bar and its help banner (GUI thread).

The bridge probes the camera on its worker; the answer comes back as a signal. "Check again"
says it is checking, then what it found (never silent). The help banner shows while no virtual
camera is available, unless the user dismissed it.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel

from desktop_app.live_bridge import LiveState
from desktop_app.services import VirtualCameraInfo
from desktop_app.vcam_help import VirtualCameraHelp
from desktop_app.window_context import WindowContext


class VirtualCameraStatus(QObject):
    def __init__(
        self,
        *,
        label: QLabel,
        help_banner: VirtualCameraHelp,
        ctx: WindowContext,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._label = label
        self._help = help_banner
        self._ctx = ctx
        self._info: VirtualCameraInfo | None = None
        self._rechecking = False
        help_banner.recheck_requested.connect(self.recheck)
        help_banner.hide_button.clicked.connect(self._help_dismissed)
        ctx.bridge.virtual_camera_changed.connect(self._show)
        ctx.bridge.state_changed.connect(self._state_changed)

    @property
    def available(self) -> bool:
        """A virtual camera was found by the last check."""
        return bool(self._info and self._info.available)

    def check(self) -> None:
        self._ctx.bridge.check_virtual_camera()

    def recheck(self) -> None:
        """ "Check again": says it is checking, then what it found (never silent)."""
        if self._ctx.bridge.state != LiveState.IDLE:
            self._ctx.messages.status("The virtual camera is checked again after Stop.", 6000)
            return
        self._rechecking = True
        self._help.recheck.setEnabled(False)
        self._ctx.messages.status("Checking for a virtual camera…")
        self.check()

    def show_help(self) -> None:
        self._help.show()
        self._help.toggle.setChecked(True)

    def _state_changed(self) -> None:
        self._show(self._info)  # "sending" or "ready"

    def _show(self, info: VirtualCameraInfo | None) -> None:
        self._info = info
        if info is None:
            return
        if self._rechecking:
            self._rechecking = False
            self._help.recheck.setEnabled(True)
            found = f"Virtual camera found: {info.device or info.backend}"
            missing = f"Still no virtual camera ({info.reason or 'no backend'})."
            self._ctx.messages.status(found if info.available else missing, 8000)
        if info.available:
            name = info.device or info.backend or "virtual camera"
            doing = "sending" if self._ctx.bridge.state == LiveState.LIVE else "ready"
            self._label.setText(f"Virtual camera: {name} · {doing}")
            self._help.hide()
        else:
            self._label.setText("Virtual camera: not available · preview and recording only")
            self._help.set_reason(info.reason)
            if not self._ctx.settings.settings.vcam_help_dismissed:
                self._help.show()

    def _help_dismissed(self) -> None:
        self._ctx.settings.update(replace(self._ctx.settings.settings, vcam_help_dismissed=True))
