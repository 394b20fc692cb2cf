"""Status-bar messages that never lose their end (GUI thread).

QStatusBar cuts a long message off at the right ("… the file will be a slides"), and the end
is often what matters ("not real time: the file will be a slideshow"). This filter paints a
message that does not fit with its middle elided instead (a long file path gives way first)
and puts the whole message in the bar's tooltip. Timed messages keep their timeouts: only
the painting changes.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QStatusBar, QWidget

_MARGIN = 6


class MessageFitter(QObject):
    """Installed on one status bar by `fit_messages`."""

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self._bar = bar
        bar.messageChanged.connect(self._tip)

    def room(self) -> QRect:
        """Where the message is drawn: left of the permanent widgets."""
        bar = self._bar
        right = bar.width() - _MARGIN
        for child in bar.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            # A permanent widget sits on the right; the others hide while a message shows.
            if child.isVisible() and child.width() > 0 and child.x() > bar.width() // 2:
                right = min(right, child.x() - _MARGIN)
        return QRect(_MARGIN, 0, max(0, right - _MARGIN), bar.height())

    def shown_text(self) -> str:
        return self._bar.fontMetrics().elidedText(
            self._bar.currentMessage(), Qt.TextElideMode.ElideMiddle, self.room().width()
        )

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is not self._bar or event.type() != QEvent.Type.Paint:
            return False
        message = self._bar.currentMessage()
        if not message or self.shown_text() == message:
            return False  # fits: Qt paints it as usual
        painter = QPainter(self._bar)
        painter.setPen(self._bar.palette().color(self._bar.foregroundRole()))
        painter.drawText(
            self.room(),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            self.shown_text(),
        )
        painter.end()
        return True

    def _tip(self, message: str) -> None:
        self._bar.setToolTip(message if message and self.shown_text() != message else "")


def fit_messages(bar: QStatusBar) -> MessageFitter:
    fitter = MessageFitter(bar)
    bar.installEventFilter(fitter)
    return fitter
