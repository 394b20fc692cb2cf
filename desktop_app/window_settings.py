"""The window's settings while the app runs (GUI thread): the current `Settings`, saved a
moment after the last change so a dragged slider writes the file once, not on every step.

Controllers read `settings` and hand back a changed copy (`dataclasses.replace`); only this
object holds the current one.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer

from desktop_app.settings import Settings, SettingsStore
from desktop_app.user_messages import UserMessages

logger = logging.getLogger(__name__)

SAVE_DELAY_MS = 400


class WindowSettings(QObject):
    def __init__(
        self,
        store: SettingsStore,
        settings: Settings,
        *,
        messages: UserMessages,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._settings = settings
        self._messages = messages
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save)

    @property
    def settings(self) -> Settings:
        return self._settings

    def update(self, settings: Settings) -> None:
        """The new settings; written to disk after SAVE_DELAY_MS without further changes."""
        self._settings = settings
        self._save_timer.start()

    def save(self) -> None:
        try:
            self.store.save(self._settings)
        except OSError as exc:
            logger.error("could not save settings: %s", exc)
            self._messages.status(f"Could not save settings: {exc}", 8000)

    def close(self, settings: Settings) -> None:
        """The window closes: no pending save, the final settings written now."""
        self._save_timer.stop()
        self._settings = settings
        self.save()
