"""One avatar's cached renderer inputs, and rendering motion latents against them (caller's
thread: a GUI worker prepares, the live inference worker renders).

The `avatar_encoder` graph runs once per photo; its outputs are everything the `renderer`
graph needs for every frame, so switching avatars live is swapping one of these objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import numpy.typing as npt

from runtime.model.contract import AVATAR_TENSORS, MOTION_DIM

Array = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]


class Runner(Protocol):
    def run(self, inputs: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Array]: ...


@runtime_checkable
class AvatarRenderer(Protocol):
    """A renderer that keeps the current avatar's tensors on its device
    (`runtime.model.execution.device_graphs.DeviceRenderer` behind the live engine's stop
    handling)."""

    def render_avatar(self, avatar: LiveAvatar, motion: Array) -> Array: ...


@dataclass(frozen=True, eq=False)
class LiveAvatar:
    name: str
    image: Image  # (S, S, 3) RGB the tensors were computed from, S the model's source size
    source_motion: Array  # (32,)
    tensors: Mapping[str, Array]  # every contract AVATAR_TENSORS entry, batch 1


def image_to_source(image: Image, size: int) -> Array:
    """(size, size, 3) uint8 RGB -> (1, 3, size, size) float32 in [0, 1]; `size` is the model
    version's source size (`ModelSet.source_size`)."""
    if image.shape != (size, size, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"expected a {size}x{size} RGB uint8 image (this model's input), got "
            f"{image.shape} {image.dtype}"
        )
    source: Array = (image.astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(source)


def encode_avatar(
    avatar_encoder: Runner, image: Image, *, size: int, name: str = "avatar"
) -> LiveAvatar:
    """Run the avatar encoder once on a `size` x `size` avatar (the model's source size)."""
    out = avatar_encoder.run({"source": image_to_source(image, size)})
    tensors = {spec.name: np.ascontiguousarray(out[spec.name]) for spec in AVATAR_TENSORS}
    motion = np.asarray(out["source_motion"], np.float32).reshape(MOTION_DIM)
    return LiveAvatar(name=name, image=image, source_motion=motion, tensors=tensors)


def to_uint8(frames: Array) -> Image:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8, rounded and saturated.

    OpenCV does the interleave and the saturating conversion in one native pass per frame,
    three times faster than the numpy equivalent (this runs for every live frame).
    """
    b, _, h, w = frames.shape
    out = np.empty((b, h, w, 3), np.uint8)
    for i in range(b):
        hwc = cv2.merge([frames[i, 0], frames[i, 1], frames[i, 2]])
        np.maximum(hwc, 0.0, out=hwc)  # convertScaleAbs would fold negatives up
        out[i] = cv2.convertScaleAbs(hwc, alpha=255.0)
    return out


def render(renderer: Runner | AvatarRenderer, avatar: LiveAvatar, motion: Array) -> Array:
    """(B, 32) motion latents -> (B, 3, 512, 512) float frames in [0, 1]. Through an
    `AvatarRenderer` the frames are valid until its next render of the same batch size."""
    if isinstance(renderer, AvatarRenderer):
        return renderer.render_avatar(avatar, motion)
    feeds: dict[str, npt.NDArray[np.generic]] = dict(avatar.tensors)
    feeds["motion"] = np.ascontiguousarray(motion, np.float32).reshape(-1, MOTION_DIM)
    return renderer.run(feeds)["frames"]
