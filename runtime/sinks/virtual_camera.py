"""The virtual camera sink through pyvirtualcam (pacer thread).

The 512x512 face is fitted (scaled to the output height or width, whichever is smaller) onto a
background of the configured output size, optionally mirrored, and sent as RGB. When no backend
can open (no OBS / v4l2loopback / Unity Capture), pyvirtualcam's own reason for each backend is
kept and reported; the engine runs on with its other sinks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from runtime.sinks import SinkUnavailable
from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class VirtualCameraConfig:
    width: int = 1280
    height: int = 720
    mirror: bool = False
    background: tuple[int, int, int] = (0, 0, 0)
    """The colour around the face (RGB)."""
    blur: bool = False
    """Around the face, the avatar itself, scaled to cover, blurred and darkened, instead of
    `background` (needs the avatar's picture: `composer_for`)."""
    device: str | None = None
    backend: str | None = None  # None: every registered backend, in pyvirtualcam's order


class FrameComposer:
    """Face (S, S, 3) -> output (H, W, 3): scaled to fit, centred on the background."""

    def __init__(
        self,
        *,
        width: int,
        height: int,
        mirror: bool = False,
        background: tuple[int, int, int] = (0, 0, 0),
        background_image: Image | None = None,
    ) -> None:
        self.width, self.height, self.mirror = width, height, mirror
        canvas = np.empty((height, width, 3), np.uint8)
        canvas[:] = np.asarray(background, np.uint8)
        if background_image is not None:
            canvas[:] = _cover(background_image, width, height)
        self._background = canvas
        self._canvas = canvas.copy()
        self.side = min(width, height)
        self.x0 = (width - self.side) // 2
        self.y0 = (height - self.side) // 2

    def compose(self, face: Image) -> Image:
        if face.shape[0] != self.side or face.shape[1] != self.side:
            shrink = face.shape[0] > self.side
            face = np.asarray(
                cv2.resize(
                    face,
                    (self.side, self.side),
                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                ),
                np.uint8,
            )
        if self.mirror:
            face = face[:, ::-1]
        self._canvas[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side] = face
        return self._canvas


def blurred_backdrop(image: Image, width: int, height: int) -> Image:
    """The avatar, scaled to cover the output, heavily blurred and darkened (the 'blur' mode)."""
    small_w, small_h = max(8, width // 8), max(8, height // 8)
    h, w = image.shape[:2]
    scale = max(small_w / w, small_h / h)
    size = (max(small_w, round(w * scale)), max(small_h, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    top, left = (size[1] - small_h) // 2, (size[0] - small_w) // 2
    cropped = resized[top : top + small_h, left : left + small_w]
    blurred = cv2.GaussianBlur(cropped, (0, 0), sigmaX=max(2.0, small_w / 40))
    big = cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)
    out: Image = np.ascontiguousarray((big.astype(np.float32) * 0.7).astype(np.uint8))
    return out


def composer_for(config: VirtualCameraConfig, avatar: Image | None = None) -> FrameComposer:
    """How the face is placed on the camera's picture: size, mirror, and the colour or (with
    `blur` and the avatar's picture) the blurred avatar around it."""
    backdrop = None
    if config.blur and avatar is not None:
        backdrop = blurred_backdrop(avatar, config.width, config.height)
    return FrameComposer(
        width=config.width,
        height=config.height,
        mirror=config.mirror,
        background=config.background,
        background_image=backdrop,
    )


def _cover(image: Image, width: int, height: int) -> Image:
    """Scale to cover width x height, centre-cropped."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    resized = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    out: Image = resized[top : top + height, left : left + width]
    return out


class VirtualCameraSink:
    def __init__(self, config: VirtualCameraConfig, *, avatar: Image | None = None):
        """`avatar`: its picture, for the `blur` background."""
        self.config = config
        self._composer = composer_for(config, avatar)
        self._camera: Any = None
        self.device: str | None = None
        self.backend: str | None = None

    @property
    def name(self) -> str:
        return "virtual camera"

    def open(self, *, fps: float) -> None:
        try:
            import pyvirtualcam
        except Exception as exc:  # the wheel or its native part is missing
            raise SinkUnavailable(f"pyvirtualcam cannot be imported: {exc}") from exc
        try:
            self._camera = pyvirtualcam.Camera(
                width=self.config.width,
                height=self.config.height,
                fps=fps,
                fmt=pyvirtualcam.PixelFormat.RGB,
                device=self.config.device,
                backend=self.config.backend,
            )
        except Exception as exc:
            raise SinkUnavailable(f"no virtual camera: {exc}") from exc
        self.device = str(self._camera.device)
        self.backend = str(self._camera.backend)
        logger.info("virtual camera %s (%s) open", self.device, self.backend)

    def set_composer(self, composer: FrameComposer) -> None:
        """A new look (mirror, background) from the next frame on, without reopening (a new
        size needs a new camera: pyvirtualcam cannot resize one)."""
        if (composer.width, composer.height) != (self.config.width, self.config.height):
            raise ValueError("a composer for another size needs another camera")
        self._composer = composer

    def send(self, frame: LiveFrame, repeat: bool) -> None:
        if self._camera is None:
            raise RuntimeError("virtual camera is not open")
        self._camera.send(self._composer.compose(frame.image))

    def close(self, timeout: float = 1.0) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()
