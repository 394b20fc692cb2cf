"""The app's look (GUI thread): Fusion, a dark palette and the bundled stylesheet.

Fusion draws some standard icons (the file dialog's toolbar: back, up, new folder, list and
detail views) in dark grey, invisible on the dark palette: a proxy style redraws those in the
palette's text colour, keeping their shapes."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleOption, QWidget

from desktop_app import assets

_PALETTE = {
    QPalette.ColorRole.Window: "#15171c",
    QPalette.ColorRole.WindowText: "#e8ebf1",
    QPalette.ColorRole.Base: "#171a20",
    QPalette.ColorRole.AlternateBase: "#1d2027",
    QPalette.ColorRole.ToolTipBase: "#262a33",
    QPalette.ColorRole.ToolTipText: "#e8ebf1",
    QPalette.ColorRole.PlaceholderText: "#8a93a5",
    QPalette.ColorRole.Text: "#e8ebf1",
    QPalette.ColorRole.Button: "#2a2f39",
    QPalette.ColorRole.ButtonText: "#e8ebf1",
    QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Highlight: "#3b8cff",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6aa8ff",
    QPalette.ColorRole.Light: "#3a404c",
    QPalette.ColorRole.Midlight: "#2f3440",
    QPalette.ColorRole.Mid: "#262a33",
    QPalette.ColorRole.Dark: "#101216",
    QPalette.ColorRole.Shadow: "#000000",
}
_DISABLED_ICON = "#6b7383"
_DISABLED = {
    QPalette.ColorRole.WindowText: "#6b7383",
    QPalette.ColorRole.Text: "#6b7383",
    QPalette.ColorRole.ButtonText: "#6b7383",
}


_DARK_ICONS = frozenset(
    {
        QStyle.StandardPixmap.SP_FileDialogBack,
        QStyle.StandardPixmap.SP_FileDialogToParent,
        QStyle.StandardPixmap.SP_FileDialogNewFolder,
        QStyle.StandardPixmap.SP_FileDialogDetailedView,
        QStyle.StandardPixmap.SP_FileDialogListView,
        QStyle.StandardPixmap.SP_FileDialogContentsView,
        QStyle.StandardPixmap.SP_FileDialogInfoView,
        QStyle.StandardPixmap.SP_FileDialogStart,
        QStyle.StandardPixmap.SP_FileDialogEnd,
        QStyle.StandardPixmap.SP_ArrowBack,
        QStyle.StandardPixmap.SP_ArrowForward,
        QStyle.StandardPixmap.SP_ArrowUp,
        QStyle.StandardPixmap.SP_ArrowDown,
        QStyle.StandardPixmap.SP_ArrowLeft,
        QStyle.StandardPixmap.SP_ArrowRight,
    }
)
ICON_COLOUR = _PALETTE[QPalette.ColorRole.Text]
_ICON_SIZES = (16, 20, 24, 32)


def light_icon(icon: QIcon, colour: str = ICON_COLOUR) -> QIcon:
    """`icon` drawn in `colour`: each size's shape (its alpha) filled with that colour."""
    result = QIcon()
    for side in _ICON_SIZES:
        for mode in (QIcon.Mode.Normal, QIcon.Mode.Disabled):
            pixmap = icon.pixmap(QSize(side, side), mode)
            if pixmap.isNull():
                continue
            tinted = QPixmap(pixmap.size())
            tinted.fill(QColor(0, 0, 0, 0))
            painter = QPainter(tinted)
            painter.drawPixmap(0, 0, pixmap)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
            shade = QColor(colour if mode == QIcon.Mode.Normal else _DISABLED_ICON)
            painter.fillRect(tinted.rect(), shade)
            painter.end()
            result.addPixmap(tinted, mode)
    return result


class LightIconStyle(QProxyStyle):
    """Fusion with its dark standard icons redrawn light (GUI thread)."""

    def standardIcon(
        self,
        standardIcon: QStyle.StandardPixmap,
        option: QStyleOption | None = None,
        widget: QWidget | None = None,
    ) -> QIcon:
        icon = super().standardIcon(standardIcon, option, widget)
        if standardIcon in _DARK_ICONS and not icon.isNull():
            return light_icon(icon)
        return icon


def palette() -> QPalette:
    result = QPalette()
    for role, colour in _PALETTE.items():
        result.setColor(role, QColor(colour))
    for role, colour in _DISABLED.items():
        result.setColor(QPalette.ColorGroup.Disabled, role, QColor(colour))
    return result


def apply(app: QApplication) -> None:
    # The stylesheet is written against Fusion on every OS.
    app.setStyle(LightIconStyle("Fusion"))
    app.setPalette(palette())
    folder = assets.icon_path().parent.as_posix()
    app.setStyleSheet(assets.theme_qss().replace("{resources}", folder))
