"""Virtual-camera help (GUI thread): shown when no virtual-camera backend is available.

It explains, for the system the app runs on, what to install, quotes the reason the backend
gave, and offers "Check again"; on Linux a button copies the `modprobe` line to the
clipboard. Preview, recording and snapshots keep working meanwhile.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

MODPROBE = (
    'sudo modprobe v4l2loopback devices=1 video_nr=10 card_label="imtalker-cam" exclusive_caps=1'
)
LINUX = """
<p><b>Linux</b> needs the <code>v4l2loopback</code> kernel module, loaded with
<code>exclusive_caps=1</code> so that browsers and video-call apps list the camera:</p>
<pre>sudo apt install v4l2loopback-dkms
{modprobe}</pre>
<p>To load it at every start, put <code>v4l2loopback</code> in
<code>/etc/modules-load.d/v4l2loopback.conf</code> and the options line
<code>options v4l2loopback devices=1 video_nr=10 card_label="imtalker-cam" exclusive_caps=1</code>
in <code>/etc/modprobe.d/v4l2loopback.conf</code>. Your user must be able to write
<code>/dev/video10</code> (usually the <code>video</code> group).</p>
""".replace("{modprobe}", MODPROBE.replace('"', "&quot;"))

WINDOWS = """
<p><b>Windows</b>: install <a href="https://obsproject.com">OBS Studio</a> (version 26 or
newer). It brings the <i>OBS Virtual Camera</i> driver that imtalker-cam sends to. You do not
need to keep OBS open; start its virtual camera once if other apps do not list it.</p>
"""

MACOS = """
<p><b>macOS</b>: install <a href="https://obsproject.com">OBS Studio</a> (version 30 or newer),
open it once, click <i>Start Virtual Camera</i> and allow the system extension in
<i>System Settings › Privacy &amp; Security</i>. Then quit OBS; imtalker-cam uses the same
camera.</p>
"""


def instructions(platform: str = sys.platform) -> str:
    """The help text as HTML, this system's section first."""
    if platform == "win32":
        first, others = WINDOWS, (LINUX, MACOS)
    elif platform == "darwin":
        first, others = MACOS, (LINUX, WINDOWS)
    else:
        first, others = LINUX, (WINDOWS, MACOS)
    return (
        first + "<p>While the virtual camera is missing you can still preview, record and take "
        "snapshots.</p><hr><p style='color:#a3abba'>Other systems:</p>" + "".join(others)
    )


HEADLINE = "No virtual camera found, so other apps cannot see imtalker-cam yet."
SHORT_HEADLINE = "No virtual camera found."


class VirtualCameraHelp(QFrame):
    """A banner (one line + buttons) that expands into the full instructions."""

    recheck_requested = Signal()

    def __init__(self, parent: QWidget | None = None, *, platform: str = sys.platform) -> None:
        super().__init__(parent)
        self._linux = platform.startswith("linux")
        self.setObjectName("Banner")
        self.setAccessibleName("Virtual camera help")
        self.headline = QLabel(self)
        self.headline.setWordWrap(True)
        self.headline.setMinimumWidth(120)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.toggle = QPushButton("How to fix", self)
        self.toggle.setCheckable(True)
        self.toggle.setAccessibleName("Show how to install a virtual camera")
        self.recheck = QPushButton("Check again", self)
        self.recheck.setAccessibleName("Check for a virtual camera again")
        self.hide_button = QPushButton("Dismiss", self)
        self.hide_button.setAccessibleName("Dismiss the virtual camera help")
        self.details = QTextBrowser(self)
        self.details.setOpenExternalLinks(True)
        self.details.setAccessibleName("Virtual camera installation steps")
        self.details.setHtml(instructions(platform))
        self.details.setMinimumHeight(220)
        self.details.hide()
        self.copy_command = QPushButton("Copy the modprobe command", self)
        self.copy_command.setAccessibleName("Copy the modprobe command to the clipboard")
        self.copy_command.setToolTip(MODPROBE)
        self.copy_command.hide()
        self._platform = platform

        row = QHBoxLayout()
        row.addWidget(self.headline, 1)
        row.addWidget(self.toggle)
        row.addWidget(self.recheck)
        row.addWidget(self.hide_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.addLayout(row)
        layout.addWidget(self.details)
        layout.addWidget(self.copy_command, 0, Qt.AlignmentFlag.AlignLeft)

        self.copy_command.clicked.connect(self.copy_modprobe)
        self.toggle.toggled.connect(self._show_details)
        self.recheck.clicked.connect(self.recheck_requested.emit)
        self.hide_button.clicked.connect(self.hide)
        self.set_reason(None)

    def set_reason(self, reason: str | None) -> None:
        self._fit_headline()
        self.headline.setToolTip(reason or "")
        why = (
            f"<p style='color:#d9c08f'><b>What the system said:</b> {_escape(reason)}</p>"
            if reason
            else ""
        )
        self.details.setHtml(why + instructions(self._platform))

    def _fit_headline(self) -> None:
        # A narrow window gets the short line rather than one word per row.
        narrow = self.width() < 640
        self.headline.setText(SHORT_HEADLINE if narrow else HEADLINE)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_headline()

    def copy_modprobe(self) -> str:
        """Put the `modprobe` line on the clipboard, to paste in a terminal."""
        QGuiApplication.clipboard().setText(MODPROBE)
        self.copy_command.setText("Copied: paste it in a terminal")
        return MODPROBE

    def _show_details(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.copy_command.setVisible(shown and self._linux)
        self.toggle.setText("Hide steps" if shown else "How to fix")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
