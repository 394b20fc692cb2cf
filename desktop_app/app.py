"""Desktop app entry point (GUI thread): builds the QApplication, the services and the window."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from desktop_app import assets, theme, wheel_guard
from desktop_app.error_boundary import ErrorBoundary, message_box, report
from desktop_app.gallery import Gallery
from desktop_app.main_window import MainWindow
from desktop_app.services import AvatarTools, Backend
from desktop_app.settings import SettingsStore
from runtime.core import paths
from runtime.core.validate import ValidationError

logger = logging.getLogger(__name__)

APP_NAME = "imtalker-cam"


def create_app(argv: Sequence[str]) -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(list(argv))
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setDesktopFileName(APP_NAME)
    app.setWindowIcon(QIcon(str(assets.icon_path())))
    theme.apply(app)
    wheel_guard.install(app)
    return app


def keep_qt_state_in(config_dir: Path) -> None:
    """Qt's own state (the file dialog's recent folders, QtProject.conf) goes in the app's
    config folder instead of ~/.config: the app writes nothing outside its folders."""
    folder = str(config_dir / "qt")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, folder)


def avatars_dir() -> Path:
    return paths.data_dir() / "avatars"


def add_sample_avatar(gallery: Gallery, avatars: AvatarTools) -> None:
    """On the very first run, put the built-in illustrated avatar in the gallery."""
    if not gallery.needs_sample():
        return
    sample = assets.sample_avatar()
    try:
        photo = avatars.load_photo(sample.photo)
        gallery.add(
            name=sample.name, photo=photo, crop=sample.crop, avatar=avatars.crop(photo, sample.crop)
        )
    except Exception:  # a broken sample must not stop the app
        logger.exception("could not add the sample avatar")
    gallery.mark_sample_added()


def build_window(backend: Backend) -> MainWindow:
    """The main window over `backend`, with the user's settings, gallery and sample avatar."""
    keep_qt_state_in(paths.config_dir())
    store = SettingsStore(paths.config_dir())
    settings, notice = store.load()
    recovered = backend.engine.recover_recordings()  # a crashed session's recording, saved
    if recovered:
        said = "; ".join(recovered)
        notice = (
            f"{notice} {said[:1].upper()}{said[1:]}."
            if notice
            else f"{said[:1].upper()}{said[1:]}."
        )
    gallery = Gallery(avatars_dir())
    add_sample_avatar(gallery, backend.avatars)
    window = MainWindow(
        backend=backend, settings_store=store, gallery=gallery, settings=settings, notice=notice
    )
    return window


def _cannot_start(text: str) -> int:
    """Say why the app cannot start (one sentence) and exit 1 once the user has read it."""
    message_box(None, text).exec()
    return 1


def _started(app: QApplication, window: MainWindow) -> None:
    """`--check-startup`: the window is up and the event loop turns; say so and leave."""
    logger.info(
        "the desktop app started: window %r shown at %dx%d on the %s platform",
        window.windowTitle(),
        window.width(),
        window.height(),
        app.platformName(),
    )
    app.quit()


def run(
    argv: Sequence[str] | None = None,
    *,
    backend: Backend | None = None,
    quit_when_shown: bool = False,
) -> int:
    """Start the app. `backend` replaces the real runtime (tests pass fakes for hardware);
    `quit_when_shown` closes it once the window is shown (an install's or a bundle's check)."""
    app = create_app(sys.argv if argv is None else argv)
    boundary = ErrorBoundary().install()
    try:
        try:
            paths.check_app_roots(config=True)
            paths.check_root(avatars_dir(), what="avatars folder")
        except ValidationError as exc:
            logger.error("%s", exc)
            return _cannot_start(f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        try:
            if backend is None:
                from desktop_app.runtime_services import runtime_backend

                backend = runtime_backend()
            window = build_window(backend)
        except Exception as exc:
            return _cannot_start(report(exc, context="starting the app"))
        window.show()
        QTimer.singleShot(0, window.check_models)
        if quit_when_shown:
            QTimer.singleShot(0, lambda: _started(app, window))
        return app.exec()
    finally:
        boundary.uninstall()


if __name__ == "__main__":
    raise SystemExit(run())
