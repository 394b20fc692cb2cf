"""A combo box (and a one-line label) that never cuts its text off (GUI thread): when the
choice is wider than the box, the middle gives way to "…" so both ends stay readable
("System default (Headset…Microphone)"), the whole text is the tooltip, and the open list is
as wide as its longest item."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QWidget,
)


class ElidedComboBox(QComboBox):
    def __init__(self, parent: QWidget | None = None, *, help_tip: str = "") -> None:
        super().__init__(parent)
        self.help_tip = help_tip
        """What the control is for: the tooltip, after the whole text when that is elided."""
        self.setToolTip(help_tip)
        self.currentIndexChanged.connect(self._show_whole_text)

    def shown_text(self) -> str:
        """The text as painted in the closed box: whole when it fits, elided in the middle."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        room = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox,
            option,
            QStyle.SubControl.SC_ComboBoxEditField,
            self,
        )
        return self.fontMetrics().elidedText(
            self.currentText(), Qt.TextElideMode.ElideMiddle, max(0, room.width() - 4)
        )

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
        self._show_whole_text()  # an item's text may have changed without a new index

    def showPopup(self) -> None:
        widest = max(
            (self.fontMetrics().horizontalAdvance(self.itemText(i)) for i in range(self.count())),
            default=0,
        )
        self.view().setMinimumWidth(widest + 40)  # the item's padding and a scroll bar
        super().showPopup()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._show_whole_text()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._show_whole_text()

    def _show_whole_text(self) -> None:
        whole = self.currentText() if self.shown_text() != self.currentText() else ""
        tip = "\n\n".join(t for t in (whole, self.help_tip) if t)
        if tip != self.toolTip():
            self.setToolTip(tip)


class ElidedLabel(QLabel):
    """One line that gives way in the middle ("my-long-rec…ording.wav") instead of being cut
    off at the end; the whole text stays in `text()` for screen readers."""

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        return QSize(40, super().sizeHint().height())

    def shown_text(self) -> str:
        return self.fontMetrics().elidedText(
            self.text(), Qt.TextElideMode.ElideMiddle, max(0, self.contentsRect().width())
        )

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            self.contentsRect(),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            self.shown_text(),
        )
