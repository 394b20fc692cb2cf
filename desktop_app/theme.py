"""The app's look (GUI thread): Fusion, a dark palette and the bundled stylesheet."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

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
_DISABLED = {
    QPalette.ColorRole.WindowText: "#6b7383",
    QPalette.ColorRole.Text: "#6b7383",
    QPalette.ColorRole.ButtonText: "#6b7383",
}


def palette() -> QPalette:
    result = QPalette()
    for role, colour in _PALETTE.items():
        result.setColor(role, QColor(colour))
    for role, colour in _DISABLED.items():
        result.setColor(QPalette.ColorGroup.Disabled, role, QColor(colour))
    return result


def apply(app: QApplication) -> None:
    app.setStyle("Fusion")  # the stylesheet is written against Fusion on every OS
    app.setPalette(palette())
    folder = assets.icon_path().parent.as_posix()
    app.setStyleSheet(assets.theme_qss().replace("{resources}", folder))
