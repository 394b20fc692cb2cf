"""Offline rendering through ONNX Runtime (runs on the caller's thread: the CLI's main thread).

photo + speech: avatar_encoder -> audio_encoder -> conditioner -> velocity (Euler, chunked as the
reference) -> renderer in batches; velocity and renderer run device-resident
(`runtime.model.execution.device_graphs`). photo + driving video: avatar_encoder ->
motion_encoder per batch of driving frames -> renderer. Frames come out as uint8 RGB (512, 512, 3),
in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from runtime.engine.motion_sampler import (
    RawConditions,
    conditioner_from_session,
    fixed_noise,
    random_noise,
    sample_motion,
    velocity_from_session,
)
from runtime.media.audio_file import normalize_utterance, num_frames, pad_to_frames
from runtime.model import contract
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.sessions import ModelSet

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]
Frame = npt.NDArray[np.uint8]
Progress = Callable[[int], None]
"""Called with the number of frames just finished."""


@dataclass(frozen=True)
class AudioRenderSettings:
    cfg_scale: float | None = None
    """Audio classifier-free guidance (expressiveness); 1 disables guidance; None = the model
    version's default (2.0 for v2, 3.0 for v1, as upstream's demo)."""
    nfe: int = 10
    """Points of the Euler time grid (nfe - 1 velocity evaluations per chunk)."""
    seed: int | None = 25
    """Fixed noise for every chunk (the reference's default seed); None draws fresh noise."""
    batch_size: int = 1
    """Frames rendered per renderer call. Measured interleaved on a quiet 2-core CPU, batch 4
    is 5-10 % faster per frame than batch 1 at four times the working memory (about 0.3 GB per
    frame, most of it chunks of the 64x64 attention maps), so 1 is the default."""


def image_to_tensor(rgb: npt.NDArray[np.uint8], size: int) -> Array:
    """(size, size, 3) uint8 RGB -> (1, 3, size, size) float32 in [0, 1]; `size` is the model
    version's source size."""
    if rgb.shape != (size, size, 3):
        raise ValueError(f"expected a {size}x{size} RGB image, got {rgb.shape}")
    return (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def frames_to_uint8(frames: Array) -> list[Frame]:
    """(B, 3, H, W) float in [0, 1] -> B frames (H, W, 3) uint8."""
    hwc = np.clip(frames, 0.0, 1.0).transpose(0, 2, 3, 1)
    return list(np.rint(hwc * 255.0).astype(np.uint8))


def resize_driving_frame(rgb: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """A whole driving frame resized to the model's input side `size` (the version's source
    size), as the reference does (the driving videos are face-centred crops already)."""
    if rgb.shape[:2] == (size, size):
        return rgb
    shrink = rgb.shape[0] > size or rgb.shape[1] > size
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(rgb, (size, size), interpolation=interpolation), np.uint8)


def retime(frames: Iterable[Frame], *, source_fps: float, target_fps: int) -> Iterator[Frame]:
    """Frames at `source_fps` -> frames at `target_fps` (each output frame shows the source
    frame on screen at its time), so the output keeps the driving video's duration."""
    if abs(source_fps - target_fps) < 1e-3:
        yield from frames
        return
    out_index = 0
    for in_index, frame in enumerate(frames):
        # Emit every output frame whose time falls within this source frame's interval.
        while out_index / target_fps < (in_index + 1) / source_fps:
            yield frame
            out_index += 1


def _batches(items: Iterable[Array], size: int) -> Iterator[Array]:
    batch: list[Array] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield np.concatenate(batch)
            batch = []
    if batch:
        yield np.concatenate(batch)


class OfflineRenderer:
    """One avatar, any number of motion sequences. `source_rgb` is the avatar at the model
    version's source size (`models.source_size`)."""

    def __init__(self, models: ModelSet, source_rgb: npt.NDArray[np.uint8]) -> None:
        self.models = models
        self.source_size = models.source_size
        source = image_to_tensor(source_rgb, self.source_size)
        encoded = models[contract.AVATAR_ENCODER.name].run({"source": source})
        self.source_motion: Array = encoded["source_motion"]  # (1, 32)
        self.avatar: dict[str, Array] = {t.name: encoded[t.name] for t in contract.AVATAR_TENSORS}
        # The avatar's tensors go to the renderer's device once; each batch then moves only
        # its motion latents in and its frames out (IOBinding, preallocated per batch size).
        self._renderer = DeviceRenderer(models[contract.RENDERER.name])
        self._renderer.use(self.avatar)

    # -- audio-driven ------------------------------------------------------------------

    def audio_features(self, audio_16k: Array) -> Array:
        """Mono 16 kHz speech -> (T, 768), T = ceil(len * 25 / 16000); normalised per
        utterance as the reference's feature extractor does."""
        normalized = normalize_utterance(audio_16k)
        padded = pad_to_frames(normalized)
        features = self.models[contract.AUDIO_ENCODER.name].run({"audio": padded[None]})
        out: Array = features["features"][0]
        if out.shape[0] != num_frames(audio_16k.shape[0]):
            raise RuntimeError(f"audio encoder returned {out.shape[0]} frames")
        return out

    def motion_from_audio(
        self,
        audio_16k: Array,
        *,
        conditions: RawConditions,
        settings: AudioRenderSettings,
    ) -> Array:
        """(T, 32) motion latents for the speech."""
        features = self.audio_features(audio_16k)
        noise = (
            fixed_noise(settings.seed)
            if settings.seed is not None
            else random_noise(np.random.default_rng())
        )
        return sample_motion(
            velocity_from_session(DeviceGraph(self.models[contract.VELOCITY.name])),
            conditioner_from_session(self.models[contract.CONDITIONER.name]),
            audio_features=features,
            ref_motion=self.source_motion[0],
            raw_conditions=conditions,
            cfg_scale=(
                self.models.version.default_cfg
                if settings.cfg_scale is None
                else settings.cfg_scale
            ),
            nfe=settings.nfe,
            noise=noise,
        )

    # -- video-driven ------------------------------------------------------------------

    def motion_from_frames(
        self, crops: Iterable[npt.NDArray[np.uint8]], *, batch_size: int
    ) -> Iterator[Array]:
        """Driving crops at the source size -> motion latents, (B, 32) per batch, in order."""
        encoder = self.models[contract.MOTION_ENCODER.name]
        size = self.source_size
        for batch in _batches((image_to_tensor(c, size) for c in crops), batch_size):
            yield encoder.run({"image": batch})["motion"]

    # -- rendering ---------------------------------------------------------------------

    def render(self, motion: Array) -> list[Frame]:
        """(B, 32) motion latents -> B frames, one renderer call."""
        return frames_to_uint8(self._renderer.render(motion))

    def render_all(
        self, motion: Iterable[Array], *, batch_size: int, progress: Progress | None = None
    ) -> Iterator[Frame]:
        """Motion latents in any chunking -> frames, rendered `batch_size` at a time."""
        rows = (m[i : i + 1] for m in motion for i in range(m.shape[0]))
        for batch in _batches(rows, batch_size):
            yield from self.render(batch)
            if progress is not None:
                progress(batch.shape[0])
