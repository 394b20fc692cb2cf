"""The large live preview (GUI thread): the latest frame, scaled to fit, with a stats overlay.

Frames arrive as QImages through a signal; painting only ever shows the newest one, so a
slow repaint drops frames instead of queueing them. While not live the selected avatar is
shown framed as the camera will send it (output size, background, mirror), with a caption.
The overlay shows fps, end-to-end latency and the execution provider actually in use; on
the CPU it says plainly that the output will not be real time.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_app.settings import Output

_BACKGROUND_WORDS = {
    "blur": "blurred background",
    "colour": "colour background",
    "none": "black bars",
}


def framed_still(avatar: QImage, output: Output) -> QImage:
    """The avatar as the camera sends it at rest: the output's size, the face centred at full
    height, the sides filled as chosen, mirrored if asked (a GUI-side sketch of the runtime's
    frame composer, at preview resolution)."""
    scale = min(1.0, 720 / max(output.width, output.height))
    width, height = max(1, round(output.width * scale)), max(1, round(output.height * scale))
    frame = QImage(width, height, QImage.Format.Format_RGB32)
    if output.background == "colour":
        frame.fill(QColor(output.background_colour))
    else:
        frame.fill(QColor(0, 0, 0))
    p = QPainter(frame)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    if output.background == "blur":
        tiny = avatar.scaled(
            16, 16, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        p.drawImage(QRect(0, 0, width, height), tiny)
        p.fillRect(QRect(0, 0, width, height), QColor(0, 0, 0, 77))  # darkened like the camera's
    face = avatar.scaled(
        QSize(width, height),
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
    if output.mirror:
        face = face.flipped(Qt.Orientation.Horizontal)
    p.drawImage((width - face.width()) // 2, (height - face.height()) // 2, face)
    p.end()
    return frame


def delay_text(latency_ms: float) -> str:
    """The end-to-end delay as the overlay says it: '180 ms' below a second, '5.0 s' above."""
    return f"{latency_ms:.0f} ms" if latency_ms < 1000 else f"{latency_ms / 1000:.1f} s"


def output_caption(output: Output) -> str:
    parts = [f"{output.width} × {output.height}", _BACKGROUND_WORDS.get(output.background, "")]
    if output.mirror:
        parts.append("mirrored")
    return "What the camera will send: " + " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class PreviewStats:
    fps: float
    latency_ms: float | None
    provider: str  # short name, e.g. "CUDA" or "CPU"
    realtime: bool
    unique_fps: float | None = None  # new pictures per second
    steps: tuple[int, int] | None = None  # (in use, chosen) while Auto uses fewer steps
    remote: str | None = None  # the render server link's state, when rendering remotely


class PreviewWidget(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Live preview")
        self.setAccessibleDescription("The picture the virtual camera sends")
        self.setMinimumSize(240, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._frame: QImage | None = None
        self._still: QImage | None = None  # the selected avatar, shown while not live
        self._stats: PreviewStats | None = None
        self._output: Output | None = None
        self._framed: QImage | None = None
        self._message = "Pick an avatar, then press Go Live"
        self._overlay = True
        self.frames_shown = 0

    def sizeHint(self) -> QSize:
        return QSize(720, 540)

    # ---- inputs (GUI thread)

    def show_frame(self, frame: QImage) -> None:
        self._frame = frame
        self.frames_shown += 1
        self.update()

    def show_still(self, image: QImage | None) -> None:
        self._still = image
        self._frame_still()

    def set_output(self, output: Output) -> None:
        """How the camera frames the picture: the idle preview shows the same."""
        self._output = output
        self._frame_still()

    def _frame_still(self) -> None:
        still, output = self._still, self._output
        if still is None or still.isNull() or output is None:
            self._framed = still
        else:
            self._framed = framed_still(still, output)
        self.update()

    @property
    def idle_picture(self) -> QImage | None:
        """What is shown while not live (the framed avatar)."""
        return self._framed

    def caption(self) -> str:
        return (
            "" if self._output is None or self._frame is not None else output_caption(self._output)
        )

    def clear_live(self, message: str) -> None:
        self._frame = None
        self._stats = None
        self._message = message
        self.update()

    @property
    def stats(self) -> PreviewStats | None:
        return self._stats

    def set_stats(self, stats: PreviewStats | None) -> None:
        self._stats = stats
        self.update()

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay = visible
        self.update()

    @property
    def overlay_visible(self) -> bool:
        return self._overlay

    @property
    def current_frame(self) -> QImage | None:
        return self._frame

    def overlay_text(self) -> str:
        """The overlay as one line (what is painted, and what screen readers get)."""
        s = self._stats
        if s is None:
            return ""
        parts = [f"{s.fps:.1f} fps"]
        if s.unique_fps is not None:
            parts.append(f"{s.unique_fps:.1f} new/s")
        if s.latency_ms is not None:
            parts.append(f"delay {delay_text(s.latency_ms)}")
        parts.append(s.provider if s.realtime else f"{s.provider} - not real time")
        if s.steps is not None:
            parts.append(f"{s.steps[0]} of {s.steps[1]} steps")
        return "  ·  ".join(parts)

    def badge_text(self) -> str:
        """The badge over the live picture (shown with or without the overlay): while the
        render server is away, the last frame stays up and this says why it does not move."""
        s = self._stats
        if self._frame is None or s is None:
            return ""
        if s.remote == "reconnecting":
            return "Reconnecting to the render server…"
        if s.remote == "connecting":
            return "Connecting to the render server…"
        return ""

    # ---- painting

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(10, 11, 14))
        image = self._frame if self._frame is not None else self._framed
        if image is not None and not image.isNull():
            target = self._fit(image.size())
            p.drawImage(target, image)
            if self._frame is None:
                p.fillRect(target, QColor(10, 11, 14, 120))  # the still is dimmed: not live
                p.setPen(QPen(QColor(90, 98, 115), 1, Qt.PenStyle.DashLine))
                p.drawRect(target.adjusted(0, 0, -1, -1))
                self._paint_caption(p, target)
        if self._frame is None:
            self._paint_message(p)
        elif self._overlay and self._stats is not None:
            self._paint_overlay(p)
        if self.badge_text():
            self._paint_badge(p)
        p.end()

    def _fit(self, size: QSize) -> QRect:
        scaled = size.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = (self.width() - scaled.width()) // 2
        y = (self.height() - scaled.height()) // 2
        return QRect(x, y, scaled.width(), scaled.height())

    def _paint_message(self, p: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(12.0, self.height() / 40))
        font.setWeight(QFont.Weight.DemiBold)
        p.setFont(font)
        metrics = p.fontMetrics()
        box = metrics.boundingRect(
            QRect(0, 0, self.width() - 80, self.height()),
            Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignCenter,
            self._message,
        )
        pad = 18
        panel = QRectF(
            (self.width() - box.width()) / 2 - pad,
            (self.height() - box.height()) / 2 - pad * 0.7,
            box.width() + 2 * pad,
            box.height() + 1.4 * pad,
        )
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(20, 22, 28, 215))
        p.drawRoundedRect(panel, 12, 12)
        p.setPen(QColor(232, 235, 241))
        p.drawText(panel, Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignCenter, self._message)

    def _paint_caption(self, p: QPainter, target: QRect) -> None:
        text = self.caption()
        if not text:
            return
        font = QFont(self.font())
        font.setPointSizeF(9.0)
        p.setFont(font)
        text = p.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, target.width() - 16)
        p.setPen(QColor(200, 206, 218))
        p.drawText(
            target.adjusted(8, 0, -8, -6),
            Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter,
            text,
        )

    def _paint_overlay(self, p: QPainter) -> None:
        s = self._stats
        assert s is not None
        font = QFont(self.font())
        font.setPointSizeF(max(10.0, self.height() / 55))
        font.setWeight(QFont.Weight.DemiBold)
        p.setFont(font)
        text = self.overlay_text()
        metrics = p.fontMetrics()
        width = metrics.horizontalAdvance(text) + 24
        height = metrics.height() + 12
        box = QRectF(12, 12, width, height)
        warn = not s.realtime
        p.setPen(QPen(QColor(245, 165, 36) if warn else QColor(0, 0, 0, 0), 1.5))
        p.setBrush(QColor(80, 50, 10, 220) if warn else QColor(0, 0, 0, 170))
        p.drawRoundedRect(box, 8, 8)
        p.setPen(QColor(255, 216, 154) if warn else QColor(240, 243, 248))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_badge(self, p: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(10.0, self.height() / 50))
        font.setWeight(QFont.Weight.DemiBold)
        p.setFont(font)
        text = self.badge_text()
        metrics = p.fontMetrics()
        width = metrics.horizontalAdvance(text) + 28
        height = metrics.height() + 14
        box = QRectF(self.width() - width - 12, 12, width, height)
        p.setPen(QPen(QColor(245, 165, 36), 1.5))
        p.setBrush(QColor(80, 50, 10, 230))
        p.drawRoundedRect(box, 8, 8)
        p.setPen(QColor(255, 216, 154))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
