"""The chosen avatar (GUI thread): adding a photo and re-cropping through the crop dialog, the
still picture while idle, and the avatar at the installed model's input size.

Choosing an avatar is kept in the settings and announced with `chosen`, so a running session
can switch to it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from desktop_app.avatar_panel import AvatarPanel
from desktop_app.crop_dialog import CropDialog
from desktop_app.gallery import Gallery
from desktop_app.images import RGB, rgb_to_qimage
from desktop_app.live_bridge import LiveState
from desktop_app.preview import PreviewWidget
from desktop_app.services import AvatarTools, Models, UserError
from desktop_app.window_context import WindowContext

logger = logging.getLogger(__name__)


class AvatarFlow(QObject):
    chosen = Signal(str)  # avatar id, after the settings and the still picture follow it

    def __init__(
        self,
        panel: AvatarPanel,
        *,
        preview: PreviewWidget,
        gallery: Gallery,
        tools: AvatarTools,
        models: Models,
        ctx: WindowContext,
        dialog_parent: QWidget,
    ) -> None:
        super().__init__(dialog_parent)
        self._panel = panel
        self._preview = preview
        self._gallery = gallery
        self._tools = tools
        self._models = models
        self._ctx = ctx
        self._dialog_parent = dialog_parent
        panel.photo_requested.connect(self.add_photo)
        panel.avatar_selected.connect(self._selected)
        panel.recrop_requested.connect(self.recrop)
        panel.avatar_deleted.connect(self._deleted)

    def select_initial(self) -> None:
        """The avatar of the last session, else the first one."""
        wanted = self._ctx.settings.settings.avatar_id
        if not (wanted and self._panel.select(wanted)) and self._panel.entries:
            self._panel.select(self._panel.entries[0].id)
        self.show_still()

    def show_still(self) -> None:
        avatar_id = self._panel.selected_id()
        entry = self._gallery.get(avatar_id) if avatar_id else None
        self._preview.show_still(QImage(str(entry.avatar_path)) if entry else None)
        if self._ctx.bridge.state == LiveState.IDLE:
            self._preview.clear_live(
                "Press Go Live to start" if entry else "Add a portrait photo to begin"
            )

    def add_photo(self, path: Path) -> CropDialog | None:
        """Load a photo and open the crop dialog; accepting it saves the new avatar."""
        try:
            photo = self._tools.load_photo(path)
        except (UserError, ValueError) as exc:
            self._ctx.messages.error(str(exc))
            return None
        square = self._tools.detect_face(photo)
        dialog = CropDialog(
            rgb_to_qimage(photo), detected=square, name=path.stem, parent=self._dialog_parent
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def accepted() -> None:
            avatar = self._tools.crop(photo, dialog.square)
            entry = self._gallery.add(
                name=dialog.name, photo=photo, crop=dialog.square, avatar=avatar
            )
            self._panel.refresh()
            self._panel.select(entry.id)
            self._ctx.messages.status(f"Added avatar “{entry.name}”", 5000)

        dialog.accepted.connect(accepted)
        dialog.open()
        return dialog

    def recrop(self, avatar_id: str) -> CropDialog | None:
        entry = self._gallery.get(avatar_id)
        if entry is None:
            return None
        photo = self._gallery.load_photo(avatar_id)
        dialog = CropDialog(
            rgb_to_qimage(photo),
            detected=self._tools.detect_face(photo),
            initial=entry.crop,
            name=entry.name,
            parent=self._dialog_parent,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def accepted() -> None:
            avatar = self._tools.crop(photo, dialog.square)
            self._gallery.recrop(avatar_id, crop=dialog.square, avatar=avatar)
            if dialog.name != entry.name:
                self._gallery.rename(avatar_id, dialog.name)
            self._panel.refresh(select=avatar_id)
            self._selected(avatar_id)

        dialog.accepted.connect(accepted)
        dialog.open()
        return dialog

    def _selected(self, avatar_id: str) -> None:
        prefs = self._ctx.settings
        prefs.update(replace(prefs.settings, avatar_id=avatar_id))
        self.show_still()
        self.chosen.emit(avatar_id)

    def model_avatar(self, avatar_id: str, size: int | None = None) -> RGB:
        """The gallery avatar at the installed model's input size. An avatar saved for another
        model version (256 px for v1, 512 px for v2) is cut again from its photo with its own
        crop square and saved, so switching model versions needs nothing from the user."""
        if size is None:
            size = self._models.model_state().source_size
        avatar = self._gallery.load_avatar(avatar_id)
        if size is None or avatar.shape[:2] == (size, size):
            return avatar
        entry = self._gallery.get(avatar_id)
        if entry is None:
            raise KeyError(avatar_id)
        photo = self._gallery.load_photo(avatar_id)
        avatar = self._tools.crop(photo, entry.crop, size)
        self._gallery.recrop(avatar_id, crop=entry.crop, avatar=avatar)
        logger.info("avatar %s re-prepared at %d px for the installed model", avatar_id, size)
        return avatar

    def _deleted(self, avatar_id: str) -> None:
        prefs = self._ctx.settings
        if prefs.settings.avatar_id == avatar_id:
            prefs.update(replace(prefs.settings, avatar_id=None))
        self.show_still()
