"""Adjust the square face crop of a new photo before it becomes an avatar (GUI thread).

The square starts on the face the face finder found (or the largest centred square when it
found none); the user moves it by dragging or with the arrow keys and zooms it with the
mouse wheel, the zoom slider or +/-. Like the runtime's crop, the square may reach past the
photo's edges (that part becomes black): the view shows a margin around the photo, wide
enough for the suggested square, and the square stays inside photo + margin.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gallery import CropSquare, clean_name

MIN_SIDE = 64
PREVIEW_SIDE = 160


@dataclass(frozen=True)
class Bounds:
    """Where the square may go, in photo pixels: the photo plus a margin on every side."""

    left: int
    top: int
    width: int
    height: int


def bounds_for(width: int, height: int, *squares: CropSquare | None) -> Bounds:
    """The photo plus 10 % of its long side, grown to hold every given square."""
    pad = round(0.1 * max(width, height))
    left, top, right, bottom = -pad, -pad, width + pad, height + pad
    for s in squares:
        if s is not None:
            left, top = min(left, s.x), min(top, s.y)
            right, bottom = max(right, s.x + s.size), max(bottom, s.y + s.size)
    return Bounds(left, top, right - left, bottom - top)


def clamp_square(square: CropSquare, bounds: Bounds) -> CropSquare:
    """The nearest square of at least MIN_SIDE (when it fits) inside `bounds`."""
    short = min(bounds.width, bounds.height)
    size = max(min(square.size, short), min(MIN_SIDE, short))
    x = min(max(square.x, bounds.left), bounds.left + bounds.width - size)
    y = min(max(square.y, bounds.top), bounds.top + bounds.height - size)
    return CropSquare(x=x, y=y, size=size)


def centred_square(width: int, height: int) -> CropSquare:
    size = min(width, height)
    return CropSquare(x=(width - size) // 2, y=(height - size) // 2, size=size)


class CropView(QWidget):
    """The photo with a movable, zoomable square; everything outside the square is dimmed."""

    square_changed = Signal(object)  # CropSquare

    def __init__(
        self, photo: QImage, square: CropSquare, bounds: Bounds, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._photo = photo
        self._bounds = bounds
        self._square = clamp_square(square, bounds)
        self._drag_from: QPointF | None = None
        self._drag_square = self._square
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 320)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self.setAccessibleName("Crop area")
        self.setAccessibleDescription(
            "Arrow keys move the square, plus and minus zoom; Shift moves in larger steps"
        )

    def sizeHint(self) -> QSize:
        return QSize(560, 560)

    @property
    def square(self) -> CropSquare:
        return self._square

    def set_square(self, square: CropSquare) -> None:
        square = clamp_square(square, self._bounds)
        if square != self._square:
            self._square = square
            self.square_changed.emit(square)
            self.update()

    def zoom_to(self, size: int) -> None:
        """Resize the square about its centre."""
        s = self._square
        cx, cy = s.x + s.size / 2, s.y + s.size / 2
        self.set_square(CropSquare(x=round(cx - size / 2), y=round(cy - size / 2), size=size))

    # ---- geometry: photo pixels <-> widget pixels (the bounds fill the widget)

    def _scale(self) -> float:
        b = self._bounds
        return min(self.width() / b.width, self.height() / b.height)

    def _origin(self) -> QPointF:
        """Where photo pixel (0, 0) is drawn."""
        b, k = self._bounds, self._scale()
        x = (self.width() - b.width * k) / 2 - b.left * k
        y = (self.height() - b.height * k) / 2 - b.top * k
        return QPointF(x, y)

    def _photo_rect(self) -> QRectF:
        o, k = self._origin(), self._scale()
        return QRectF(o.x(), o.y(), self._photo.width() * k, self._photo.height() * k)

    def _square_rect(self) -> QRectF:
        o, k, s = self._origin(), self._scale(), self._square
        return QRectF(o.x() + s.x * k, o.y() + s.y * k, s.size * k, s.size * k)

    # ---- painting

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(10, 11, 14))
        photo = self._photo_rect()
        square = self._square_rect()
        p.fillRect(square, QColor(0, 0, 0))  # what the crop gets past the photo's edges
        p.drawImage(photo, self._photo)
        shade = QPainterPath()
        shade.addRect(QRectF(self.rect()))
        hole = QPainterPath()
        hole.addRect(square)
        p.fillPath(shade.subtracted(hole), QColor(0, 0, 0, 170))
        p.setPen(QPen(QColor(255, 255, 255), 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(square)
        # Thirds, as a framing guide.
        p.setPen(QPen(QColor(255, 255, 255, 90), 1))
        for i in (1, 2):
            x = square.x() + square.width() * i / 3
            y = square.y() + square.height() * i / 3
            p.drawLine(QPointF(x, square.top()), QPointF(x, square.bottom()))
            p.drawLine(QPointF(square.left(), y), QPointF(square.right(), y))
        if self.hasFocus():
            p.setPen(QPen(QColor(59, 140, 255), 3))
            p.drawRect(square.adjusted(-3, -3, 3, 3))
        p.end()

    # ---- mouse and keyboard

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag_from = event.position()
            self._drag_square = self._square
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            if not self._square_rect().contains(event.position()):
                # A click outside the square moves the square's centre there.
                k, o = self._scale(), self._origin()
                px = (event.position().x() - o.x()) / k
                py = (event.position().y() - o.y()) / k
                s = self._square.size
                self.set_square(CropSquare(x=round(px - s / 2), y=round(py - s / 2), size=s))
                self._drag_square = self._square
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None:
            k = self._scale()
            delta = event.position() - self._drag_from
            s = self._drag_square
            self.set_square(
                CropSquare(x=round(s.x + delta.x() / k), y=round(s.y + delta.y() / k), size=s.size)
            )
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag_from = None
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        super().mouseReleaseEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_to(round(self._square.size * (0.92**steps)))
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        step = max(
            1,
            self._square.size
            // (5 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 40),
        )
        s = self._square
        moves = {
            Qt.Key.Key_Left: (-step, 0),
            Qt.Key.Key_Right: (step, 0),
            Qt.Key.Key_Up: (0, -step),
            Qt.Key.Key_Down: (0, step),
        }
        key = Qt.Key(event.key())
        if key in moves:
            dx, dy = moves[key]
            self.set_square(CropSquare(x=s.x + dx, y=s.y + dy, size=s.size))
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_to(round(s.size * 0.92))
        elif key == Qt.Key.Key_Minus:
            self.zoom_to(round(s.size / 0.92))
        else:
            super().keyPressEvent(event)


class CropDialog(QDialog):
    """Shows the photo with the crop square, a preview of the result and the avatar's name."""

    def __init__(
        self,
        photo: QImage,
        *,
        detected: CropSquare | None,
        name: str,
        initial: CropSquare | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Crop the face")
        self.setAccessibleName("Crop the face")
        self._photo = photo
        self._detected = detected or centred_square(photo.width(), photo.height())
        start = initial or self._detected
        self.bounds = bounds_for(photo.width(), photo.height(), self._detected, initial)

        self.intro = intro = QLabel(
            "Place the square around the face: drag it (or use the arrow keys) and zoom with "
            "the mouse wheel, the slider or + and -. Leave some room around the head."
            if detected is not None or initial is not None
            else "No face was found automatically. Drag the square over the face and zoom "
            "until the head fills about two thirds of it."
        )
        intro.setWordWrap(True)
        self.view = CropView(photo, start, self.bounds, self)

        short = min(self.bounds.width, self.bounds.height)
        self.zoom = QSlider(Qt.Orientation.Horizontal, self)
        self.zoom.setRange(min(MIN_SIDE, short), short)
        self.zoom.setInvertedAppearance(True)  # right = closer = smaller square
        self.zoom.setValue(self.view.square.size)
        self.zoom.setAccessibleName("Zoom")
        self.zoom.setToolTip("Zoom the crop (smaller square = closer)")
        zoom_label = QLabel("&Zoom", self)
        zoom_label.setBuddy(self.zoom)

        self.result_preview = QLabel(self)
        self.result_preview.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.result_preview.setAccessibleName("Crop result")
        self.result_preview.setStyleSheet("border: 1px solid #363c48; border-radius: 6px;")
        self.name_edit = QLineEdit(clean_name(name), self)
        self.name_edit.setAccessibleName("Avatar name")
        self.name_edit.setMaxLength(40)
        self.reset_button = QPushButton("&Reset to detected face", self)
        self.reset_button.setAccessibleName("Reset crop to the detected face")

        buttons = QDialogButtonBox(self)
        # The object name must be set before the box polishes the button.
        self.accept_button = QPushButton("&Use this crop", self)
        self.accept_button.setObjectName("Primary")
        self.accept_button.setAccessibleName("Use this crop")
        buttons.addButton(self.accept_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.accept_button.setDefault(True)
        cancel = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName("Cancel")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        side = QVBoxLayout()
        result_title = QLabel("Result", self)
        result_title.setObjectName("Muted")
        side.addWidget(result_title)
        side.addWidget(self.result_preview)
        form = QFormLayout()
        name_label = QLabel("&Name", self)
        name_label.setBuddy(self.name_edit)
        form.addRow(name_label, self.name_edit)
        side.addLayout(form)
        side.addWidget(self.reset_button)
        side.addStretch(1)

        zoom_row = QHBoxLayout()
        zoom_row.addWidget(zoom_label)
        zoom_row.addWidget(self.zoom, 1)

        left = QVBoxLayout()
        left.addWidget(self.view, 1)
        left.addLayout(zoom_row)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addLayout(side)
        root = QVBoxLayout(self)
        root.addWidget(intro)
        root.addLayout(body, 1)
        root.addWidget(buttons)

        self.view.square_changed.connect(self._on_square)
        self.zoom.valueChanged.connect(self.view.zoom_to)
        self.reset_button.clicked.connect(lambda: self.view.set_square(self._detected))
        self.setTabOrder(self.view, self.zoom)
        self.setTabOrder(self.zoom, self.name_edit)
        self.setTabOrder(self.name_edit, self.reset_button)
        self.setTabOrder(self.reset_button, self.accept_button)
        self.setTabOrder(self.accept_button, cancel)
        self._on_square(self.view.square)
        self.view.setFocus()
        self.resize(860, 640)

    @property
    def square(self) -> CropSquare:
        return self.view.square

    @property
    def name(self) -> str:
        return clean_name(self.name_edit.text())

    def _on_square(self, square: CropSquare) -> None:
        if self.zoom.value() != square.size:
            self.zoom.blockSignals(True)
            self.zoom.setValue(square.size)
            self.zoom.blockSignals(False)
        crop = self._photo.copy(QRect(square.x, square.y, square.size, square.size))
        self.result_preview.setPixmap(
            QPixmap.fromImage(
                crop.scaled(
                    PREVIEW_SIDE,
                    PREVIEW_SIDE,
                    Qt.AspectRatioMode.IgnoreAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        )
