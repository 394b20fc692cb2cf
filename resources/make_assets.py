"""Draw the app's own artwork with Qt: the icon and the illustrated sample avatar.

Run `python -m resources.make_assets` to regenerate the committed PNGs (GUI-less: it uses
Qt's offscreen platform). Nothing here is a third-party photo: every pixel comes from the
shapes below, so the sample avatar ships under the project's own licence.

The sample portrait is drawn the way a photo is lit (soft key light from the upper left,
darker eye sockets, a lighter nose bridge) because the face finder the app uses (OpenCV's
Haar cascade, via `runtime.media.face_crop`) looks for exactly those light/dark patterns. The
script refuses to write a sample in which it does not find exactly one face, and stores the
crop it suggests next to the picture.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QGuiApplication,
    QImage,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QRadialGradient,
)

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ICON = HERE / "icon.png"
CHECK = HERE / "check.png"
CHEVRON = HERE / "chevron.png"
CHEVRON_UP = HERE / "chevron_up.png"
SAMPLE = HERE / "sample_avatar.png"
SAMPLE_META = HERE / "sample_avatar.json"
SAMPLE_SIDE = 512
ICON_SIDE = 256

SKIN = QColor(226, 178, 146)
SKIN_SHADE = QColor(176, 120, 92)
HAIR = QColor(58, 38, 30)
ACCENT = QColor(38, 132, 255)


def _radial(center: QPointF, radius: float, stops: list[tuple[float, QColor]]) -> QBrush:
    gradient = QRadialGradient(center, radius)
    for at, colour in stops:
        gradient.setColorAt(at, colour)
    return QBrush(gradient)


def _linear(a: QPointF, b: QPointF, stops: list[tuple[float, QColor]]) -> QBrush:
    gradient = QLinearGradient(a, b)
    for at, colour in stops:
        gradient.setColorAt(at, colour)
    return QBrush(gradient)


def _alpha(colour: QColor, alpha: int) -> QColor:
    out = QColor(colour)
    out.setAlpha(alpha)
    return out


def _eye(p: QPainter, cx: float, cy: float, *, flip: bool) -> None:
    """One eye: shadowed socket, white, iris, pupil, upper lid line and a catch light."""
    s = -1.0 if flip else 1.0
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(
        _radial(
            QPointF(cx, cy - 4), 44, [(0.0, _alpha(SKIN_SHADE, 200)), (1.0, _alpha(SKIN_SHADE, 0))]
        )
    )
    p.drawEllipse(QPointF(cx, cy - 4), 46, 32)
    white = QPainterPath()
    white.moveTo(cx - 24, cy)
    white.cubicTo(cx - 12, cy - 15, cx + 12, cy - 15, cx + 24, cy - 1)
    white.cubicTo(cx + 12, cy + 10, cx - 12, cy + 10, cx - 24, cy)
    p.setBrush(QColor(236, 232, 226))
    p.drawPath(white)
    p.save()
    p.setClipPath(white)
    p.setBrush(
        _radial(
            QPointF(cx + 2 * s, cy - 2), 12, [(0.0, QColor(40, 90, 70)), (1.0, QColor(20, 45, 35))]
        )
    )
    p.drawEllipse(QPointF(cx + 2 * s, cy - 2), 11, 11)
    p.setBrush(QColor(8, 8, 10))
    p.drawEllipse(QPointF(cx + 2 * s, cy - 2), 5, 5)
    p.setBrush(QColor(255, 255, 255, 230))
    p.drawEllipse(QPointF(cx + 5 * s - 3, cy - 6), 2.6, 2.6)
    p.restore()
    lid = QPainterPath()
    lid.moveTo(cx - 26, cy + 1)
    lid.cubicTo(cx - 12, cy - 17, cx + 12, cy - 17, cx + 26, cy - 1)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(QPen(QColor(30, 18, 14), 3.2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawPath(lid)
    brow = QPainterPath()
    brow.moveTo(cx - 30 * s, cy - 24)
    brow.cubicTo(cx - 12 * s, cy - 38, cx + 14 * s, cy - 38, cx + 30 * s, cy - 28)
    p.setPen(QPen(HAIR, 7.5, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawPath(brow)


def draw_sample(side: int = SAMPLE_SIDE) -> QImage:
    """A head-and-shoulders portrait, centred like a photo a user would pick."""
    image = QImage(side, side, QImage.Format.Format_RGB32)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(side / 512.0, side / 512.0)
    # Backdrop: a soft studio gradient.
    p.fillRect(
        QRectF(0, 0, 512, 512),
        _radial(
            QPointF(200, 160), 520, [(0.0, QColor(196, 214, 232)), (1.0, QColor(84, 104, 134))]
        ),
    )
    p.setPen(Qt.PenStyle.NoPen)
    # Shoulders and shirt.
    shirt = QPainterPath()
    shirt.moveTo(40, 512)
    shirt.cubicTo(60, 420, 150, 392, 256, 388)
    shirt.cubicTo(362, 392, 452, 420, 472, 512)
    shirt.closeSubpath()
    p.setBrush(
        _linear(
            QPointF(0, 390),
            QPointF(0, 512),
            [(0.0, QColor(52, 110, 168)), (1.0, QColor(30, 62, 104))],
        )
    )
    p.drawPath(shirt)
    # Neck with the shadow under the jaw.
    p.setBrush(
        _linear(QPointF(0, 330), QPointF(0, 410), [(0.0, SKIN_SHADE), (0.5, SKIN), (1.0, SKIN)])
    )
    p.drawRoundedRect(QRectF(212, 320, 88, 90), 30, 30)
    collar = QPainterPath()
    collar.moveTo(200, 398)
    collar.cubicTo(230, 430, 282, 430, 312, 398)
    collar.lineTo(318, 410)
    collar.cubicTo(284, 446, 228, 446, 194, 410)
    collar.closeSubpath()
    p.setBrush(QColor(230, 236, 244))
    p.drawPath(collar)
    # Hair behind the head.
    p.setBrush(HAIR)
    p.drawEllipse(QRectF(146, 86, 220, 250))
    # Ears.
    p.setBrush(SKIN_SHADE)
    p.drawEllipse(QRectF(156, 222, 30, 52))
    p.drawEllipse(QRectF(326, 222, 30, 52))
    # Face: lit from the upper left.
    face = QPainterPath()
    face.moveTo(256, 130)
    face.cubicTo(318, 130, 344, 180, 342, 236)
    face.cubicTo(340, 300, 300, 352, 256, 356)
    face.cubicTo(212, 352, 172, 300, 170, 236)
    face.cubicTo(168, 180, 194, 130, 256, 130)
    p.setBrush(
        _radial(
            QPointF(236, 220),
            150,
            [(0.0, QColor(240, 200, 170)), (0.65, SKIN), (1.0, SKIN_SHADE)],
        )
    )
    p.drawPath(face)
    # Fringe.
    fringe = QPainterPath()
    fringe.moveTo(164, 226)
    fringe.cubicTo(150, 120, 232, 84, 288, 98)
    fringe.cubicTo(348, 112, 372, 170, 348, 226)
    fringe.cubicTo(336, 178, 312, 156, 282, 150)
    fringe.cubicTo(252, 170, 210, 168, 196, 160)
    fringe.cubicTo(180, 180, 172, 200, 164, 226)
    p.setBrush(_linear(QPointF(0, 90), QPointF(0, 220), [(0.0, QColor(84, 58, 44)), (1.0, HAIR)]))
    p.drawPath(fringe)
    # Eyes, with darker sockets (the cascade's strongest cue).
    _eye(p, 218, 232, flip=False)
    _eye(p, 294, 232, flip=True)
    # Nose: a soft lit bridge, the shaded far side and the nostrils.
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(
        _radial(
            QPointF(252, 270),
            26,
            [(0.0, _alpha(QColor(250, 224, 200), 150)), (1.0, _alpha(SKIN, 0))],
        )
    )
    p.drawEllipse(QPointF(252, 268), 14, 34)
    nose = QPainterPath()
    nose.moveTo(262, 246)
    nose.cubicTo(270, 266, 280, 282, 276, 294)
    nose.cubicTo(270, 300, 262, 300, 256, 298)
    nose.cubicTo(266, 290, 270, 276, 262, 246)
    p.setBrush(_alpha(SKIN_SHADE, 120))
    p.drawPath(nose)
    p.setBrush(_alpha(QColor(120, 70, 56), 200))
    p.drawEllipse(QPointF(245, 296), 4.5, 2.6)
    p.drawEllipse(QPointF(267, 296), 4.5, 2.6)
    # Mouth: lips and the dark line between them.
    upper = QPainterPath()
    upper.moveTo(226, 322)
    upper.cubicTo(240, 312, 250, 312, 256, 316)
    upper.cubicTo(262, 312, 272, 312, 286, 322)
    upper.cubicTo(266, 326, 246, 326, 226, 322)
    p.setBrush(QColor(170, 88, 82))
    p.drawPath(upper)
    lower = QPainterPath()
    lower.moveTo(228, 323)
    lower.cubicTo(246, 344, 266, 344, 284, 323)
    lower.cubicTo(266, 328, 246, 328, 228, 323)
    p.setBrush(QColor(190, 104, 96))
    p.drawPath(lower)
    p.setPen(QPen(QColor(92, 40, 38), 2.2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.setBrush(Qt.BrushStyle.NoBrush)
    line = QPainterPath()
    line.moveTo(226, 322)
    line.cubicTo(246, 328, 266, 328, 286, 322)
    p.drawPath(line)
    # Cheek warmth.
    p.setPen(Qt.PenStyle.NoPen)
    for x in (206, 306):
        p.setBrush(
            _radial(
                QPointF(x, 290),
                26,
                [(0.0, QColor(222, 120, 110, 70)), (1.0, QColor(222, 120, 110, 0))],
            )
        )
        p.drawEllipse(QPointF(x, 290), 26, 22)
    p.end()
    return image


def draw_icon(side: int = ICON_SIDE) -> QImage:
    """A rounded tile with a camera body whose lens is a face: the app in one glyph."""
    image = QImage(side, side, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(side / 256.0, side / 256.0)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(
        _linear(
            QPointF(0, 0),
            QPointF(256, 256),
            [(0.0, QColor(64, 156, 255)), (1.0, QColor(28, 76, 196))],
        )
    )
    p.drawRoundedRect(QRectF(8, 8, 240, 240), 52, 52)
    # Camera body and its viewfinder bump.
    p.setBrush(QColor(255, 255, 255))
    p.drawRoundedRect(QRectF(36, 80, 184, 128), 26, 26)
    p.drawRoundedRect(QRectF(92, 58, 72, 36), 12, 12)
    # Lens ring, then a face inside the lens.
    p.setBrush(QColor(22, 40, 80))
    p.drawEllipse(QPointF(128, 144), 50, 50)
    p.setBrush(QColor(255, 206, 160))
    p.drawEllipse(QPointF(128, 146), 36, 38)
    p.setBrush(QColor(22, 40, 80))
    p.drawEllipse(QPointF(115, 138), 5, 6)
    p.drawEllipse(QPointF(141, 138), 5, 6)
    p.setPen(QPen(QColor(22, 40, 80), 5, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawArc(QRectF(110, 142, 36, 24), -20 * 16, -140 * 16)
    # The "live" dot.
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(255, 72, 72))
    p.drawEllipse(QPointF(196, 104), 10, 10)
    p.end()
    return image


def draw_check(side: int = 32) -> QImage:
    """The tick drawn inside a checked check box (the theme scales it to the box)."""
    image = QImage(side, side, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(side / 32.0, side / 32.0)
    pen = QPen(QColor(255, 255, 255), 4.5, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    p.setPen(pen)
    tick = QPainterPath()
    tick.moveTo(7, 17)
    tick.lineTo(13, 23)
    tick.lineTo(25, 9)
    p.drawPath(tick)
    p.end()
    return image


def draw_chevron(side: int = 32, *, up: bool = False) -> QImage:
    """The down arrow of drop-down lists and spin boxes (`up`: the spin boxes' up arrow)."""
    image = QImage(side, side, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(side / 32.0, side / 32.0)
    pen = QPen(QColor(200, 206, 218), 3.5, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    p.setPen(pen)
    arrow = QPainterPath()
    if up:
        arrow.moveTo(9, 20)
        arrow.lineTo(16, 12)
        arrow.lineTo(23, 20)
    else:
        arrow.moveTo(9, 12)
        arrow.lineTo(16, 20)
        arrow.lineTo(23, 12)
    p.drawPath(arrow)
    p.end()
    return image


def sample_crop(image: QImage) -> tuple[int, dict[str, int]]:
    """How many faces the app's face finder sees, and the crop it suggests for the largest."""
    from desktop_app.images import qimage_to_rgb
    from runtime.media import face_crop

    rgb = qimage_to_rgb(image)
    faces = face_crop.detect_faces(rgb)
    if not faces:
        return 0, {}
    left, top, right, _ = face_crop.crop_box_for_face(faces[0]).pixel_bounds()
    return len(faces), {"x": left, "y": top, "size": right - left}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    sample = draw_sample()
    faces, crop = sample_crop(sample)
    if faces != 1:
        logger.error("the face finder sees %d faces in the sample avatar, not 1", faces)
        return 1
    sample.save(str(SAMPLE))
    SAMPLE_META.write_text(json.dumps({"name": "Sample", "crop": crop}, indent=2) + "\n")
    draw_icon().save(str(ICON))
    draw_check().save(str(CHECK))
    draw_chevron().save(str(CHEVRON))
    draw_chevron(up=True).save(str(CHEVRON_UP))
    logger.info("wrote the icon, theme images and the sample avatar (crop %s)", crop)
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
