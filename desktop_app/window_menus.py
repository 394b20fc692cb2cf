"""The main window's actions, menus, About box and shortcut list (GUI thread).

Menu titles own Alt+F, Alt+L, Alt+V and Alt+H (no control in the window uses those letters);
toggles (the stats overlay) are checkable actions, so the menu shows their state with a tick.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

from desktop_app.avatar_panel import AvatarPanel
from desktop_app.services import Models

MENU_LETTERS = frozenset("FLVH")  # &File, &Live, &View, &Help
MODEL_REPO = "https://huggingface.co/cbsjtu01/IMTalker"
PAPER = "https://arxiv.org/abs/2511.22167"

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("F5 or Ctrl+L", "Go Live / Stop"),
    ("1 – 9", "Switch to avatar 1 – 9 (also while live)"),
    ("Ctrl+O", "Add a photo"),
    ("Ctrl+R", "Start / stop recording"),
    ("Ctrl+Shift+S", "Save a snapshot"),
    ("Ctrl+I", "Show / hide the stats overlay"),
    ("Ctrl+0", "Reset head pose and gaze (Natural on, sliders centred)"),
    ("F2 / Delete", "Rename / delete the selected avatar"),
    ("Ctrl+Tab", "Next settings tab"),
    ("Alt + underlined letter", "The control or menu with that letter"),
    ("Ctrl+Q", "Quit"),
)


def app_version() -> str:
    try:
        return importlib.metadata.version("imtalker-cam")
    except importlib.metadata.PackageNotFoundError:
        return "development copy"


@dataclass(frozen=True)
class WindowActions:
    live: QAction
    add: QAction
    record: QAction
    snapshot: QAction
    overlay: QAction
    reset: QAction
    models: QAction
    cuda: QAction
    vcam: QAction
    open_folder: QAction
    choose_folder: QAction
    shortcuts: QAction
    about: QAction
    quit: QAction


@dataclass(frozen=True)
class MenuCommands:
    """What the menu items do (each is called with no arguments; its result is ignored)."""

    toggle_live: Callable[[], object]
    snapshot: Callable[[], object]
    reset_pose: Callable[[], object]
    open_model_setup: Callable[[], object]
    fetch_cuda: Callable[[], object]
    show_vcam_help: Callable[[], object]
    open_recordings_folder: Callable[[], object]
    choose_recordings_folder: Callable[[], object]


class WindowMenus:
    """The window's actions, menus and keys; it keeps the About box and the shortcut list
    it last opened."""

    def __init__(
        self,
        window: QMainWindow,
        commands: MenuCommands,
        *,
        avatars: AvatarPanel,
        overlay_button: QPushButton,
        record_button: QPushButton,
        models: Models,
    ) -> None:
        self._window = window
        self._models = models
        self.about_box: QMessageBox | None = None
        self.shortcuts_dialog: QDialog | None = None

        def action(
            text: str, keys: list[QKeySequence.StandardKey | str], slot: Callable[[], object]
        ) -> QAction:
            act = QAction(text, window)
            act.setShortcuts([QKeySequence(k) for k in keys])
            act.triggered.connect(slot)
            window.addAction(act)
            return act

        overlay = action("Show &stats overlay", ["Ctrl+I"], lambda: None)
        overlay.setCheckable(True)
        overlay.setChecked(overlay_button.isChecked())
        overlay.toggled.connect(overlay_button.setChecked)
        overlay_button.toggled.connect(overlay.setChecked)
        self.actions = acts = WindowActions(
            live=action("&Go Live / Stop", ["F5", "Ctrl+L"], commands.toggle_live),
            add=action("&Add photo…", [QKeySequence.StandardKey.Open], avatars.choose_photo),
            record=action("&Record", ["Ctrl+R"], record_button.click),
            snapshot=action("Snaps&hot", ["Ctrl+Shift+S"], commands.snapshot),
            overlay=overlay,
            reset=action("Reset &pose", ["Ctrl+0"], commands.reset_pose),
            models=action("&Model set-up…", [], commands.open_model_setup),
            cuda=action("Fetch the &CUDA runtime…", [], commands.fetch_cuda),
            vcam=action("&Virtual camera help", [], commands.show_vcam_help),
            open_folder=action("&Open recordings folder", [], commands.open_recordings_folder),
            choose_folder=action(
                "&Choose recordings folder…", [], commands.choose_recordings_folder
            ),
            shortcuts=action("&Keyboard shortcuts", ["F1"], self.show_shortcuts),
            about=action("A&bout imtalker-cam", [], self.show_about),
            quit=action("&Quit", [QKeySequence.StandardKey.Quit], window.close),
        )
        rename = QShortcut(QKeySequence("F2"), avatars.list, avatars.rename_selected)
        rename.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        delete = QShortcut(QKeySequence.StandardKey.Delete, avatars.list, avatars.delete_selected)
        delete.setContext(Qt.ShortcutContext.WidgetShortcut)
        self.avatar_keys: list[QShortcut] = []
        for number in range(1, 10):
            key = QShortcut(QKeySequence(str(number)), window)
            key.activated.connect(lambda n=number: avatars.select_number(n))
            self.avatar_keys.append(key)

        menu = window.menuBar()
        file_menu = menu.addMenu("&File")
        for act in (acts.add, acts.snapshot, acts.open_folder, acts.choose_folder):
            file_menu.addAction(act)
        file_menu.addSeparator()
        file_menu.addAction(acts.quit)
        live_menu = menu.addMenu("&Live")
        for act in (acts.live, acts.record, acts.reset):
            live_menu.addAction(act)
        view_menu = menu.addMenu("&View")
        view_menu.addAction(acts.overlay)
        help_menu = menu.addMenu("&Help")
        for act in (acts.models, acts.cuda, acts.vcam, acts.shortcuts):
            help_menu.addAction(act)
        help_menu.addSeparator()
        help_menu.addAction(acts.about)

    def show_about(self) -> QMessageBox:
        version: str | None = None
        try:
            state = self._models.model_state()
            detail, version = state.detail, state.model_version
        except Exception as exc:  # the About box must open whatever the store says
            detail = f"Model state unavailable: {exc}"
        box = QMessageBox(self._window)
        box.setWindowTitle("About imtalker-cam")
        box.setAccessibleName("About imtalker-cam")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(about_html(detail, version))
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        box.setIconPixmap(self._window.windowIcon().pixmap(64, 64))
        box.open()
        self.about_box = box
        return box

    def show_shortcuts(self) -> QDialog:
        dialog = QDialog(self._window)
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.setAccessibleName("Keyboard shortcuts")
        rows = "".join(
            f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{w}</td></tr>" for k, w in SHORTCUTS
        )
        label = QLabel(f"<table cellpadding='3'>{rows}</table>", dialog)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(label)
        layout.addWidget(buttons)
        dialog.open()
        self.shortcuts_dialog = dialog
        return dialog


def about_html(model_detail: str, model_version: str | None = None) -> str:
    installed = f"<b>Installed:</b> IMTalker {model_version}<br>" if model_version else ""
    return (
        f"<h3>imtalker-cam {app_version()}</h3>"
        "<p>One portrait photo in, a live talking virtual camera out.</p>"
        f"<p><b>Model:</b> IMTalker (<a href='{MODEL_REPO}'>cbsjtu01/IMTalker</a>, "
        f"<a href='{PAPER}'>paper</a>)<br>{installed}{model_detail}</p>"
        "<p><b>Licence:</b> Apache-2.0, like the upstream IMTalker code. The model weights "
        "come under their authors' terms.</p>"
    )
