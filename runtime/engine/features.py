"""Audio features for the generator through the `audio_encoder` graph (runs on the caller's thread).

Two ways in, one normalisation: the offline path encodes a whole utterance normalised to zero
mean and unit variance (what wav2vec2's feature extractor does with `do_normalize`); the live
path encodes a sliding window of recent audio normalised the same way per window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
import numpy.typing as npt

from runtime.model.contract import AUDIO_FEATURE_DIM, SAMPLES_PER_FRAME

Array = npt.NDArray[np.float32]

EncoderFn = Callable[[Array], Array]
"""(1, samples) normalised 16 kHz audio, samples a multiple of 640 -> (1, frames, 768)."""

NORM_EPS = 1e-7  # the variance epsilon of wav2vec2's feature extractor


class Runner(Protocol):
    def run(self, inputs: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Array]: ...


def encoder_from_session(session: Runner) -> EncoderFn:
    def encode(audio: Array) -> Array:
        return session.run({"audio": audio})["features"]

    return encode


def normalize(audio: Array) -> Array:
    """Zero mean, unit variance (`(x - mean) / sqrt(var + 1e-7)`), float32."""
    x = np.asarray(audio, np.float32)
    if x.size == 0:
        return x.copy()
    out: Array = ((x - x.mean()) / np.sqrt(x.var() + NORM_EPS)).astype(np.float32)
    return out


def frames_for_samples(samples: int) -> int:
    """Video frames (25 fps) an utterance of `samples` 16 kHz samples covers (rounded up)."""
    return math.ceil(samples / SAMPLES_PER_FRAME)


def pad_to_frames(audio: Array, frames: int) -> Array:
    """Pad by repeating the last sample to exactly `frames` * 640 samples (the reference's
    replicate padding); longer input is an error."""
    target = frames * SAMPLES_PER_FRAME
    if audio.shape[0] > target:
        raise ValueError(f"{audio.shape[0]} samples do not fit in {frames} frames")
    if audio.shape[0] == target:
        return audio
    if audio.shape[0] == 0:
        return np.zeros(target, np.float32)
    return np.concatenate([audio, np.full(target - audio.shape[0], audio[-1], np.float32)])


def utterance_features(encode: EncoderFn, audio16k: Array) -> Array:
    """The offline path: a whole utterance -> (T, 768), T = ceil(samples / 640)."""
    frames = frames_for_samples(int(audio16k.shape[0]))
    if frames == 0:
        return np.zeros((0, AUDIO_FEATURE_DIM), np.float32)
    audio = pad_to_frames(normalize(audio16k), frames)
    return _encode(encode, audio, frames)


def window_features(encode: EncoderFn, window16k: Array, *, last_frames: int) -> Array:
    """The live path: a window of whole frames, normalised as one utterance -> the features of
    its last `last_frames` frames, (last_frames, 768)."""
    if window16k.shape[0] % SAMPLES_PER_FRAME:
        raise ValueError("a live window must hold whole frames (a multiple of 640 samples)")
    frames = window16k.shape[0] // SAMPLES_PER_FRAME
    if not 0 < last_frames <= frames:
        raise ValueError(f"cannot take {last_frames} frames from a {frames}-frame window")
    features = _encode(encode, normalize(window16k), frames)
    return features[frames - last_frames :]


def _encode(encode: EncoderFn, audio: Array, frames: int) -> Array:
    out: Array = np.asarray(encode(audio[None]), np.float32)
    if out.shape != (1, frames, AUDIO_FEATURE_DIM):
        raise ValueError(f"audio encoder returned {out.shape}, expected (1, {frames}, 768)")
    first: Array = out[0]
    return first
