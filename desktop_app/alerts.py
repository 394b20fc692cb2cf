"""The alert bar above the preview (GUI thread): what went wrong with the live source or the
model, said where the user looks, with the one action that helps ("Use the microphone",
"Model set-up…"). Like OBS Studio's and NVIDIA Broadcast's in-window notices it stays until
the problem is over or the user dismisses it; it never blocks the window.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget


class AlertBar(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("AlertBar")
        self.setAccessibleName("Problem")
        self.setProperty("severity", "error")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.setMinimumWidth(120)
        self.action_button = QPushButton(self)
        self.action_button.setAccessibleName("Fix the problem")
        self.dismiss_button = QPushButton("Dismiss", self)
        self.dismiss_button.setAccessibleName("Dismiss the problem message")
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 6, 8, 6)
        row.addWidget(self.label, 1)
        row.addWidget(self.action_button)
        row.addWidget(self.dismiss_button)
        self._action: Callable[[], object] | None = None
        self.topic: str | None = None  # what the shown alert is about ("source", "model"...)
        self.action_button.clicked.connect(self._act)
        self.dismiss_button.clicked.connect(self.clear)
        self.hide()

    def show_alert(
        self,
        topic: str,
        message: str,
        *,
        severity: str = "error",
        action: tuple[str, Callable[[], object]] | None = None,
    ) -> None:
        """Show `message` (replacing any alert); `action` is a button's text and what it does."""
        self.topic = topic
        self.label.setText(message)
        self.setAccessibleDescription(message)
        self.setProperty("severity", severity)
        self.style().unpolish(self)
        self.style().polish(self)
        self._action = action[1] if action else None
        self.action_button.setVisible(action is not None)
        if action is not None:
            self.action_button.setText(action[0])
            self.action_button.setAccessibleName(action[0].replace("&", "").rstrip("…"))
        self.show()

    def clear(self, topic: str | None = None) -> None:
        """Hide the alert (only if it is about `topic`, when one is given)."""
        if topic is not None and topic != self.topic:
            return
        self.topic = None
        self._action = None
        self.hide()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def _act(self) -> None:
        action = self._action
        self.clear()
        if action is not None:
            action()
