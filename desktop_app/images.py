"""numpy RGB arrays <-> QImage (any thread: QImages, unlike widgets, work off the GUI thread)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PySide6.QtGui import QImage

RGB = npt.NDArray[np.uint8]


def rgb_to_qimage(rgb: RGB) -> QImage:
    """An (H, W, 3) uint8 array as a QImage that owns a copy of the pixels."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    pixels = np.ascontiguousarray(rgb)
    height, width = pixels.shape[:2]
    image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()  # detach from the numpy buffer, which may be reused by the producer


def qimage_to_rgb(image: QImage) -> RGB:
    """A QImage as an (H, W, 3) uint8 array (a copy)."""
    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = converted.width(), converted.height(), converted.bytesPerLine()
    raw = np.frombuffer(converted.constBits(), dtype=np.uint8, count=stride * height)
    return raw.reshape(height, stride)[:, : 3 * width].reshape(height, width, 3).copy()


def save_png(rgb: RGB, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rgb_to_qimage(rgb).save(str(path)):
        raise OSError(f"could not write {path}")


def load_png(path: Path) -> RGB:
    image = QImage(str(path))
    if image.isNull():
        raise OSError(f"could not read {path}")
    return qimage_to_rgb(image)
