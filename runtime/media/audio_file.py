"""Decode a speech file into the model's audio input (runs on the caller's thread).

Stateless; any thread may call it (the CLI's main thread, a GUI worker). Decoding uses PyAV
(FFmpeg), so every common container and codec works (WAV, MP3, AAC/M4A, Ogg Vorbis, Opus, FLAC,
the audio track of a video, ...), at any rate and channel layout.

What the reference does, and what this module reproduces:
- ``librosa.load(path, sr=16000)``: float samples in [-1, 1], channels averaged to mono, then
  resampled with soxr at "HQ" quality (librosa's default ``soxr_hq``); no resampling when the
  file is already 16 kHz. :func:`load_audio`.
- ``Wav2Vec2FeatureExtractor(do_normalize=True)``: ``(x - mean) / sqrt(var + 1e-7)`` over the
  whole utterance. :func:`normalize_utterance`.
- ``FMGenerator.sample``: ``T = ceil(len * 25 / 16000)`` video frames, and
  ``AudioEncoder._pad_audio`` replicate-pads the samples to ``T * 640`` (one frame is 640
  samples at 25 fps). :func:`num_frames`, :func:`pad_to_frames`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Final

import av
import av.error
import numpy as np
import numpy.typing as npt
import soxr

from runtime.core.validate import ValidationError, check_input_file

logger = logging.getLogger(__name__)

#: The model's audio rate and frame rate; one video frame spans SAMPLES_PER_FRAME samples.
SAMPLE_RATE: Final = 16_000
FPS: Final = 25
SAMPLES_PER_FRAME: Final = SAMPLE_RATE // FPS  # 640

#: Default longest accepted input, in seconds (callers may pass their own cap).
DEFAULT_MAX_SECONDS: Final = 600.0
#: Peak level under which a file counts as silent: 1e-4 is -80 dBFS, below 16-bit dither.
SILENCE_PEAK: Final = 1e-4
#: The wav2vec2 feature extractor's variance epsilon.
NORM_EPSILON: Final = 1e-7


class AudioFileError(ValueError):
    """The audio file cannot be used; the message says why, in user terms."""


class SilentAudioError(AudioFileError):
    """The file decodes fine but contains only silence."""


class NoAudioTrackError(AudioFileError):
    """The file has no audio track at all (a video without sound)."""


class TooLongError(AudioFileError):
    """The audio is longer than the caller's limit."""


def load_audio(
    path: str | os.PathLike[str],
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    silence_peak: float = SILENCE_PEAK,
) -> npt.NDArray[np.float32]:
    """Decode the first audio track of ``path`` to mono float32 at 16 kHz, shape (N,).

    Raises :class:`AudioFileError` for a missing file, a file that is not audio or is corrupt,
    a file without an audio track, an empty track, or one longer than ``max_seconds``; and
    :class:`SilentAudioError` when the peak level is below ``silence_peak``.
    """
    file = Path(path)
    _check_file(file)
    mono, rate = _decode_mono(file, max_seconds=max_seconds)
    if mono.size == 0:
        raise AudioFileError(f"{file.name} contains no audio samples (the audio track is empty)")
    peak = float(np.max(np.abs(mono)))
    if not math.isfinite(peak):
        raise AudioFileError(f"{file.name} is corrupt: it decodes to invalid sample values")
    if peak < silence_peak:
        level = "-inf" if peak == 0.0 else f"{20.0 * math.log10(peak):.0f}"
        raise SilentAudioError(
            f"{file.name} is silent (peak level {level} dBFS); choose a recording with speech"
        )
    if rate == SAMPLE_RATE:
        return mono
    resampled = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(resampled, dtype=np.float32)


def normalize_utterance(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Zero mean, unit variance over the whole utterance, like wav2vec2's ``do_normalize``."""
    samples = np.asarray(x, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (N,), got shape {samples.shape}")
    normalized: npt.NDArray[np.float32] = (samples - samples.mean()) / np.sqrt(
        samples.var() + NORM_EPSILON
    )
    return normalized.astype(np.float32, copy=False)


def num_frames(num_samples: int, *, fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames for ``num_samples`` of audio: ceil(num_samples * fps / sample_rate)."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    # Integer ceil: the float form can be off by one for long inputs.
    return -(-num_samples * fps // sample_rate)


def pad_to_frames(
    x: npt.NDArray[np.float32], *, fps: int = FPS, sample_rate: int = SAMPLE_RATE
) -> npt.NDArray[np.float32]:
    """Repeat the last sample until the length is a whole number of frames.

    Output length is ``num_frames(len(x)) * sample_rate / fps`` (a multiple of 640 at the
    defaults); an input already that long is returned unchanged (as a copy-free view).
    """
    samples = np.asarray(x, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (N,), got shape {samples.shape}")
    if samples.size == 0:
        raise ValueError("cannot pad empty audio")
    if sample_rate % fps:
        raise ValueError(f"sample_rate {sample_rate} is not a multiple of fps {fps}")
    target = num_frames(samples.size, fps=fps, sample_rate=sample_rate) * (sample_rate // fps)
    if target == samples.size:
        return samples
    return np.pad(samples, (0, target - samples.size), mode="edge")


def _check_file(file: Path) -> None:
    if not file.exists():
        raise AudioFileError(f"audio file not found: {file}")
    if file.is_dir():
        raise AudioFileError(f"{file} is a folder, not an audio file")
    try:
        # Before its size: a FIFO or device reports 0 bytes, and opening a FIFO blocks.
        check_input_file(file, label="audio file")
    except ValidationError as exc:
        raise AudioFileError(str(exc)) from None
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise AudioFileError(f"cannot read {file}: {exc.strerror or exc}") from None
    if size == 0:
        raise AudioFileError(f"{file.name} is empty (0 bytes)")


def _decode_mono(file: Path, *, max_seconds: float) -> tuple[npt.NDArray[np.float32], int]:
    """Decode and average all channels; returns (samples, native sample rate)."""
    try:
        container = av.open(str(file), mode="r")
    except av.error.FFmpegError as exc:
        raise AudioFileError(
            f"{file.name} is not an audio file FFmpeg can read, or it is corrupt ({_reason(exc)})"
        ) from None
    except OSError as exc:
        raise AudioFileError(f"cannot read {file}: {exc.strerror or exc}") from None
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams})
            found = f" (it has only {', '.join(kinds)})" if kinds else ""
            raise NoAudioTrackError(f"{file.name} has no audio track{found}")
        stream = container.streams.audio[0]
        if container.duration is not None and container.duration / 1e6 > max_seconds + 1.0:
            raise TooLongError(_too_long(file, container.duration / 1e6, max_seconds))
        chunks: list[npt.NDArray[np.float32]] = []
        rate = 0
        channels = 0
        total = 0
        resampler: av.AudioResampler | None = None
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    channels = frame.layout.nb_channels
                    # Planar float at the first frame's rate/layout: later frames that change
                    # either are converted to match instead of breaking the concatenation.
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                for converted in resampler.resample(frame):
                    planes = converted.to_ndarray().reshape(channels, -1)  # (C, n)
                    chunks.append(planes.mean(axis=0, dtype=np.float32))
                    total += planes.shape[1]
                if total > max_seconds * rate:
                    raise TooLongError(_too_long(file, None, max_seconds))
            if resampler is not None:
                for converted in resampler.resample(None):
                    planes = converted.to_ndarray().reshape(channels, -1)
                    chunks.append(planes.mean(axis=0, dtype=np.float32))
        except av.error.FFmpegError as exc:
            raise AudioFileError(
                f"{file.name} is corrupt: decoding failed ({_reason(exc)})"
            ) from None
    if not chunks:
        return np.zeros(0, dtype=np.float32), rate or SAMPLE_RATE
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32), rate


def _too_long(file: Path, seconds: float | None, max_seconds: float) -> str:
    length = f" ({seconds:.0f} s)" if seconds is not None else ""
    return (
        f"{file.name} is too long{length}: the limit is {max_seconds:.0f} s; "
        "split it into shorter files"
    )


def _reason(exc: av.error.FFmpegError) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text)
