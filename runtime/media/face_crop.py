"""Find the face in a portrait and crop it the way IMTalker expects (runs on the caller's thread).

:func:`prepare_avatar` and the crop functions are stateless and run on whatever thread calls
them (CLI main thread, a GUI worker). :class:`FaceTracker` keeps per-stream state and is meant
for the live engine's capture thread; use one tracker per thread.

Detection is fully offline: OpenCV's frontal-face Haar cascade that ships inside the
opencv-python-headless 4.x wheel (``cv2.data.haarcascades``). Nothing is ever downloaded.

Framing. The reference (IMTalker ``renderer/inference.py``, ``DataProcessor.process_img``) takes
the S3FD face box, and crops a square centred on the box centre whose half side is
1.6 x max(box half-width, box half-height), padding with black where the square leaves the
picture; the crop is then resized to the model's source size (256x256 for v1, 512x512 for v2).
S3FD is not available offline, so we convert the Haar box into an "S3FD-like" box first:

- size: ``S3FD side ~= HAAR_TO_S3FD_SCALE * Haar side`` with the scale 1.05;
- centre: ``S3FD centre ~= Haar centre + HAAR_CENTER_SHIFT_Y * Haar side`` downwards, 0.05.

How these were chosen (``tests/runtime/media/test_face_crop.py`` pins the result on the fixtures):
1. By eye on the four fixture portraits, with the Haar boxes drawn: the Haar square runs from the
   upper forehead (often into the hair) to about the chin and is a little wider than the cheeks.
   An S3FD/WIDER-style box spans hairline-ish to chin, cheek to cheek, and is taller than wide,
   so its larger side is its height. Estimated ratios of that height to the Haar side: 0.82,
   1.05, 0.95, 0.93 (source_1..4), and its centre sits 0 to 0.14 Haar sides lower.
2. On the reference's own driving clips (``driving_*.mp4``: HDTF-style 512/480 square crops of
   the kind the model was trained on), the Haar side is 0.51-0.60 (median 0.56) of the frame and
   its centre 0.47-0.50 down. If those frames are 1.6 x S3FD crops, the implied ratio is 1.12
   and the centre shift +0.03.
The two estimates bracket 1.05; a slightly loose crop is also the safer error for a talking
head (room for head motion, no chin cut off). So the crop side is 1.6 * 1.05 = 1.68 Haar sides:
the detected Haar box fills about 60 % of the crop width, as in the driving clips. The GUI can
still move and resize the box (:func:`crop_to_box`).

Whole-image mode (``crop=False``) takes the centred largest square, then resizes it. The
reference simply stretches the picture to its input size; a square crop keeps faces undistorted
on non-square photos, and matches the reference app's own no-face fallback (centre square).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from runtime.media.avatar_image import AvatarImageError, load_avatar_image
from runtime.model.versions import DEFAULT_VERSION

logger = logging.getLogger(__name__)

#: Avatar side, in pixels, when the caller does not say which model version it is for: the
#: current version's source size. Callers that know the model pass its `source_size` (256 for
#: IMTalker v1, 512 for v2); `PreparedAvatar.image_at` re-crops the photo for another size.
AVATAR_SIZE: Final = DEFAULT_VERSION.source_size
#: Reference crop: half side = CROP_SCALE x the larger half-side of the S3FD face box.
CROP_SCALE: Final = 1.6
#: Calibration of the Haar box to the reference's S3FD box (see the module docstring).
HAAR_TO_S3FD_SCALE: Final = 1.05
HAAR_CENTER_SHIFT_Y: Final = 0.05
#: Padding colour where a crop leaves the picture (the reference pads with black).
PAD_RGB: Final = (0, 0, 0)

_CASCADE_FILE: Final = "haarcascade_frontalface_default.xml"
# Detection runs on a copy whose longer side is at most this: Haar cost grows with area and
# portrait faces are large, so nothing is lost.
_DETECT_MAX_SIDE: Final = 640
# Faces smaller than this fraction of the shorter image side are ignored (noise, background).
_MIN_FACE_FRACTION: Final = 0.08
_MIN_NEIGHBORS: Final = 5
_SCALE_FACTOR: Final = 1.1


class NoFaceFoundError(AvatarImageError):
    """No face was found; the message tells the user about the whole-image option."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face, axis-aligned, in pixels of the original (upright) image."""

    x: float
    y: float
    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.width / 2.0, self.y + self.height / 2.0)


@dataclass(frozen=True)
class CropBox:
    """A square crop in original image pixels. It may extend past the image edges; the part
    outside is padded with :data:`PAD_RGB` when cropping."""

    center_x: float
    center_y: float
    half_size: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center_x) and math.isfinite(self.center_y)):
            raise ValueError("crop box centre must be finite")
        if not (math.isfinite(self.half_size) and self.half_size > 0):
            raise ValueError(f"crop box half size must be positive, got {self.half_size}")

    @property
    def left(self) -> float:
        return self.center_x - self.half_size

    @property
    def top(self) -> float:
        return self.center_y - self.half_size

    @property
    def size(self) -> float:
        return 2.0 * self.half_size

    @classmethod
    def from_corner(cls, left: float, top: float, size: float) -> CropBox:
        """Build from a top-left corner and a side length (how a GUI rubber band reports it)."""
        half = size / 2.0
        return cls(center_x=left + half, center_y=top + half, half_size=half)

    def pixel_bounds(self) -> tuple[int, int, int, int]:
        """Integer (left, top, right, bottom), right/bottom exclusive, side >= 1."""
        side = max(1, round(self.size))
        left = math.floor(self.center_x - side / 2.0 + 0.5)
        top = math.floor(self.center_y - side / 2.0 + 0.5)
        return (left, top, left + side, top + side)


@dataclass(frozen=True, eq=False)
class PreparedAvatar:
    """The model-ready avatar and how it was obtained (enough for a GUI to show and adjust)."""

    image: npt.NDArray[np.uint8]  # (size, size, 3) RGB, size as asked (default AVATAR_SIZE)
    crop_box: CropBox  # in `source` pixels
    face_box: FaceBox | None  # None in whole-image mode
    source: npt.NDArray[np.uint8]  # (H, W, 3) upright RGB photo the boxes refer to

    def image_at(self, size: int) -> npt.NDArray[np.uint8]:
        """The avatar at `size` x `size` (a model version's source size): `image` when it
        already is, else the same crop box cut from the photo again (never an upscale of a
        smaller avatar)."""
        if self.image.shape[:2] == (size, size):
            return self.image
        return crop_to_box(self.source, self.crop_box, size=size)


def detect_faces(rgb: npt.NDArray[np.uint8]) -> list[FaceBox]:
    """All frontal faces in an RGB image, largest first, in the image's own pixels."""
    _check_rgb(rgb)
    return _thread_detector().detect(
        rgb, max_side=_DETECT_MAX_SIDE, min_face_fraction=_MIN_FACE_FRACTION
    )


def crop_box_for_face(face: FaceBox) -> CropBox:
    """The reference framing around a Haar face box (calibrated, see the module docstring)."""
    side = max(face.width, face.height) * HAAR_TO_S3FD_SCALE
    cx, cy = face.center
    cy += HAAR_CENTER_SHIFT_Y * max(face.width, face.height)
    return CropBox(center_x=cx, center_y=cy, half_size=CROP_SCALE * side / 2.0)


def whole_image_box(width: int, height: int) -> CropBox:
    """The largest centred square of a width x height picture."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    side = min(width, height)
    return CropBox(center_x=width / 2.0, center_y=height / 2.0, half_size=side / 2.0)


def crop_to_box(
    rgb: npt.NDArray[np.uint8], box: CropBox, *, size: int = AVATAR_SIZE
) -> npt.NDArray[np.uint8]:
    """Cut ``box`` out of ``rgb`` (padding outside the picture) and resize to size x size.

    Shrinking uses area averaging (no aliasing); enlarging uses bicubic interpolation.
    """
    _check_rgb(rgb)
    if size <= 0:
        raise ValueError(f"output size must be positive, got {size}")
    h, w = rgb.shape[:2]
    left, top, right, bottom = box.pixel_bounds()
    pad_left, pad_top = max(0, -left), max(0, -top)
    pad_right, pad_bottom = max(0, right - w), max(0, bottom - h)
    inner: npt.NDArray[np.uint8] = rgb[max(0, top) : min(h, bottom), max(0, left) : min(w, right)]
    if inner.size == 0:
        raise ValueError("the crop box lies entirely outside the image")
    if pad_left or pad_top or pad_right or pad_bottom:
        inner = cv2.copyMakeBorder(  # type: ignore[assignment]
            np.ascontiguousarray(inner),
            pad_top,
            pad_bottom,
            pad_left,
            pad_right,
            cv2.BORDER_CONSTANT,
            value=PAD_RGB,
        )
    side = right - left
    if side == size:
        return np.ascontiguousarray(inner)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    resized = cv2.resize(inner, (size, size), interpolation=interpolation)
    return np.asarray(resized, dtype=np.uint8)


def crop_avatar(
    rgb: npt.NDArray[np.uint8],
    *,
    crop: bool = True,
    name: str = "the photo",
    size: int = AVATAR_SIZE,
) -> PreparedAvatar:
    """Make a model-ready avatar from an RGB photo already in memory.

    With ``crop`` the largest face is framed like the reference; without it, the whole
    picture's centred square is used. Raises :class:`NoFaceFoundError` when ``crop`` is set and
    no face is found.
    """
    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    face: FaceBox | None = None
    if crop:
        faces = detect_faces(rgb)
        if not faces:
            raise NoFaceFoundError(
                f"no face found in {name}. Use a clear, front-facing portrait, or use the "
                "whole image without face cropping (--no-crop / 'Use whole image')."
            )
        if len(faces) > 1:
            logger.info("%d faces found in %s; using the largest", len(faces), name)
        face = faces[0]
        box = crop_box_for_face(face)
    else:
        box = whole_image_box(w, h)
    image = crop_to_box(rgb, box, size=size)
    return PreparedAvatar(image=image, crop_box=box, face_box=face, source=rgb)


def prepare_avatar(
    path: str | os.PathLike[str], *, crop: bool = True, size: int = AVATAR_SIZE
) -> PreparedAvatar:
    """Load a photo safely (:func:`load_avatar_image`) and make the size x size avatar from it
    (`size`: the model version's source size).

    Raises :class:`~runtime.media.avatar_image.AvatarImageError` (bad file) or
    :class:`NoFaceFoundError` (a subclass: no face while ``crop`` is set).
    """
    rgb = load_avatar_image(path)
    return crop_avatar(rgb, crop=crop, name=os.path.basename(os.fspath(path)), size=size)


class FaceTracker:
    """Keeps a webcam face framed: square crops (``output_size``: the model version's source
    size) that follow the face without jitter.

    Runs on the live engine's capture thread (one tracker per stream; not thread-safe).
    Detection (the costly part: 10-40 ms on a 320 px copy on a 2-core CPU, the range depending
    on load) runs every ``detect_every`` frames; the other frames only crop (~1 ms). Between
    detections and when a detection misses, the last known face is kept. The crop box moves
    towards the latest detection by an exponential moving average (``smoothing`` is the weight
    of the new target per frame), so it glides instead of jumping. Until a face has been seen,
    the centred square of the frame is returned, so the stream never stalls.
    """

    def __init__(
        self,
        *,
        detect_every: int = 5,
        smoothing: float = 0.25,
        output_size: int = AVATAR_SIZE,
        detect_max_side: int = 320,
        min_face_fraction: float = 0.15,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        if not 0.0 < min_face_fraction < 1.0:
            raise ValueError(f"min_face_fraction must be in (0, 1), got {min_face_fraction}")
        self._detect_every = detect_every
        self._alpha = smoothing
        self._size = output_size
        self._detect_max_side = detect_max_side
        # A webcam face is large; skipping tiny scales is most of the cascade's cost.
        self._min_face_fraction = min_face_fraction
        self._detector = _HaarDetector()
        self._frame_index = 0
        self._frame_shape: tuple[int, int] | None = None
        self._target: CropBox | None = None
        self._box: CropBox | None = None
        self._last_detection_found = False

    @property
    def box(self) -> CropBox | None:
        """The smoothed crop box used for the last frame (frame pixels), or None before one."""
        return self._box

    @property
    def face_found(self) -> bool:
        """Whether the most recent detection attempt found a face."""
        return self._last_detection_found

    @property
    def has_face(self) -> bool:
        """Whether a face has been seen since the start (or the last reset)."""
        return self._target is not None

    def reset(self) -> None:
        """Forget the face (for example after switching cameras)."""
        self._frame_index = 0
        self._frame_shape = None
        self._target = None
        self._box = None
        self._last_detection_found = False

    def update(self, frame_rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Track the face in one RGB frame and return its output_size x output_size crop."""
        _check_rgb(frame_rgb)
        h, w = frame_rgb.shape[:2]
        if self._frame_shape != (h, w):
            self.reset()
            self._frame_shape = (h, w)
        if self._frame_index % self._detect_every == 0:
            faces = self._detector.detect(
                frame_rgb,
                max_side=self._detect_max_side,
                min_face_fraction=self._min_face_fraction,
            )
            self._last_detection_found = bool(faces)
            if faces:
                self._target = crop_box_for_face(faces[0])
        self._frame_index += 1
        target = self._target if self._target is not None else whole_image_box(w, h)
        self._box = target if self._box is None else _ema(self._box, target, self._alpha)
        return crop_to_box(frame_rgb, self._box, size=self._size)


def _ema(current: CropBox, target: CropBox, alpha: float) -> CropBox:
    keep = 1.0 - alpha
    return CropBox(
        center_x=keep * current.center_x + alpha * target.center_x,
        center_y=keep * current.center_y + alpha * target.center_y,
        half_size=keep * current.half_size + alpha * target.half_size,
    )


class _HaarDetector:
    """One OpenCV cascade; cascades are not safe to share between threads."""

    def __init__(self) -> None:
        folder = _cascade_folder()
        path = os.path.join(folder, _CASCADE_FILE)
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(
                f"OpenCV's face model {_CASCADE_FILE} is missing from {folder}; "
                "reinstall opencv-python-headless 4.x"
            )
        self._cascade = cascade

    def detect(
        self, rgb: npt.NDArray[np.uint8], *, max_side: int, min_face_fraction: float
    ) -> list[FaceBox]:
        h, w = rgb.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            small = (max(1, round(w * scale)), max(1, round(h * scale)))
            gray = cv2.resize(gray, small, interpolation=cv2.INTER_AREA)
        # Equalising makes the cascade far less sensitive to exposure and low-contrast photos.
        gray = cv2.equalizeHist(gray)
        min_face = max(20, round(min_face_fraction * min(gray.shape[:2])))
        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=_SCALE_FACTOR,
            minNeighbors=_MIN_NEIGHBORS,
            minSize=(min_face, min_face),
        )
        boxes = [
            FaceBox(
                x=float(x) / scale,
                y=float(y) / scale,
                width=float(bw) / scale,
                height=float(bh) / scale,
            )
            for (x, y, bw, bh) in np.asarray(found).reshape(-1, 4)
        ]
        boxes.sort(key=lambda b: b.area, reverse=True)
        return boxes


def _cascade_folder() -> str:
    # cv2.data is a plain submodule the type stubs do not declare.
    return str(cv2.data.haarcascades)  # type: ignore[attr-defined]


_local = threading.local()


def _thread_detector() -> _HaarDetector:
    detector: _HaarDetector | None = getattr(_local, "detector", None)
    if detector is None:
        detector = _HaarDetector()
        _local.detector = detector
    return detector


def _check_rgb(rgb: npt.NDArray[np.uint8]) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError("the image is empty")
