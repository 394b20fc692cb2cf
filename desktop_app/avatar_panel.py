"""The avatar gallery (GUI thread): thumbnails of saved avatars, add, rename, delete, switch.

Avatars keep the order they were added in; the first nine answer to the number keys 1-9 in
the main window. A photo dropped anywhere on the panel (or picked with "Add photo") is
reported with `photo_requested`; the main window runs the crop dialog and saves it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QInputDialog,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gallery import AvatarEntry, Gallery

logger = logging.getLogger(__name__)

THUMB = 88
PHOTO_FILTER = "Photos (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
_ID_ROLE = Qt.ItemDataRole.UserRole


def dropped_photo(event: QDragEnterEvent | QDropEvent) -> Path | None:
    """The first local file in a drag, if any (its format is checked when it is loaded)."""
    mime = event.mimeData()
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            return Path(url.toLocalFile())
    return None


class AvatarPanel(QWidget):
    photo_requested = Signal(object)  # Path of a photo to crop and add
    avatar_selected = Signal(str)  # avatar id
    recrop_requested = Signal(str)  # avatar id
    avatar_deleted = Signal(str)

    def __init__(self, gallery: Gallery, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gallery = gallery
        self.setAcceptDrops(True)
        self.setAccessibleName("Avatars")

        self.list = QListWidget(self)
        self.list.setObjectName("Gallery")
        self.list.setAccessibleName("Saved avatars")
        self.list.setAccessibleDescription("Press 1 to 9 to switch avatars, even while live")
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 22, THUMB + 34))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

        self.add_button = QPushButton("&Add photo…", self)
        self.add_button.setObjectName("Primary")
        self.add_button.setAccessibleName("Add a photo")
        self.add_button.setToolTip("Open a portrait photo (or drop one here)  Ctrl+O")
        self.rename_button = QPushButton("Rename", self)
        self.rename_button.setAccessibleName("Rename avatar")
        self.rename_button.setToolTip("Rename the selected avatar  F2")
        self.recrop_button = QPushButton("Crop…", self)
        self.recrop_button.setAccessibleName("Adjust the crop of the avatar")
        self.delete_button = QPushButton("Delete", self)
        self.delete_button.setAccessibleName("Delete avatar")
        self.delete_button.setToolTip("Delete the selected avatar  Del")
        hint = QLabel("Drop a photo here · keys 1–9 switch", self)
        hint.setObjectName("Hint")
        hint.setWordWrap(True)

        # Two rows: the three buttons keep their text down to the panel's narrowest width.
        buttons = QGridLayout()
        buttons.addWidget(self.rename_button, 0, 0)
        buttons.addWidget(self.recrop_button, 0, 1)
        buttons.addWidget(self.delete_button, 1, 0, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.add_button)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        layout.addWidget(hint)

        self.add_button.clicked.connect(self.choose_photo)
        self.rename_button.clicked.connect(self.rename_selected)
        self.recrop_button.clicked.connect(self._recrop_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemActivated.connect(lambda item: self.avatar_selected.emit(item.data(_ID_ROLE)))
        self._entries: list[AvatarEntry] = []
        self.refresh()

    # ---- contents

    @property
    def entries(self) -> list[AvatarEntry]:
        return list(self._entries)

    def refresh(self, select: str | None = None) -> None:
        keep = select or self.selected_id()
        self.list.blockSignals(True)
        try:
            self.list.clear()
            self._entries = self.gallery.entries()
            for number, entry in enumerate(self._entries, start=1):
                label = f"{number} · {entry.name}" if number <= 9 else entry.name
                item = QListWidgetItem(self._thumbnail(entry), label)
                item.setData(_ID_ROLE, entry.id)
                item.setToolTip(entry.name + (f"  (key {number})" if number <= 9 else ""))
                item.setData(Qt.ItemDataRole.AccessibleTextRole, f"Avatar {number}: {entry.name}")
                self.list.addItem(item)
                if entry.id == keep:
                    self.list.setCurrentItem(item)
        finally:
            self.list.blockSignals(False)
        self._sync_buttons()

    def selected_id(self) -> str | None:
        item = self.list.currentItem()
        return None if item is None else str(item.data(_ID_ROLE))

    def select(self, avatar_id: str) -> bool:
        """Select an avatar (emits `avatar_selected` when it changes the selection)."""
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(_ID_ROLE) == avatar_id:
                self.list.setCurrentItem(item)
                return True
        return False

    def select_number(self, number: int) -> bool:
        """Hotkey: select the `number`-th avatar (1-based)."""
        if 1 <= number <= len(self._entries):
            return self.select(self._entries[number - 1].id)
        return False

    @staticmethod
    def _thumbnail(entry: AvatarEntry) -> QIcon:
        image = QImage(str(entry.avatar_path))
        if image.isNull():
            return QIcon()
        return QIcon(
            QPixmap.fromImage(
                image.scaled(
                    THUMB,
                    THUMB,
                    Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        )

    # ---- actions

    def choose_photo(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a portrait photo", "", PHOTO_FILTER)
        if path:
            self.photo_requested.emit(Path(path))

    def rename_selected(self) -> None:
        avatar_id = self.selected_id()
        if avatar_id is None:
            return
        entry = self.gallery.get(avatar_id)
        if entry is None:
            return
        name, ok = QInputDialog.getText(self, "Rename avatar", "Name:", text=entry.name)
        if ok:
            self.rename(avatar_id, name)

    def rename(self, avatar_id: str, name: str) -> None:
        self.gallery.rename(avatar_id, name)
        self.refresh(select=avatar_id)

    def delete_selected(self) -> None:
        avatar_id = self.selected_id()
        entry = self.gallery.get(avatar_id) if avatar_id else None
        if entry is None:
            return
        answer = QMessageBox.question(
            self,
            "Delete avatar",
            f"Delete the avatar “{entry.name}”? The photo file you picked is not touched.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(entry.id)

    def delete(self, avatar_id: str) -> None:
        row = next((i for i, e in enumerate(self._entries) if e.id == avatar_id), 0)
        self.gallery.delete(avatar_id)
        self.refresh()
        self.avatar_deleted.emit(avatar_id)
        if self._entries:
            self.select(self._entries[min(row, len(self._entries) - 1)].id)

    def _recrop_selected(self) -> None:
        avatar_id = self.selected_id()
        if avatar_id is not None:
            self.recrop_requested.emit(avatar_id)

    def _current_changed(self, current: QListWidgetItem | None, _previous: object) -> None:
        self._sync_buttons()
        if current is not None:
            self.avatar_selected.emit(str(current.data(_ID_ROLE)))

    def _sync_buttons(self) -> None:
        has = self.list.currentItem() is not None
        for button in (self.rename_button, self.recrop_button, self.delete_button):
            button.setEnabled(has)

    # ---- drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_photo(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_photo(event)
        if path is not None:
            event.acceptProposedAction()
            self.photo_requested.emit(path)
