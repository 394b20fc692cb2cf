"""Audio decoding for the model: real fixtures, common codecs, and every way a file is bad."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from runtime.media.audio_file import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    AudioFileError,
    SilentAudioError,
    load_audio,
    normalize_utterance,
    num_frames,
    pad_to_frames,
)
from runtime.media.video_file import Mp4Writer


def _tone(rate: int, seconds: float, freq: float = 440.0) -> npt.NDArray[np.float32]:
    """Stereo test signal (2, N): the same tone at two levels, so the mono mix is known."""
    t = np.arange(round(rate * seconds)) / rate
    tone = np.sin(2 * np.pi * freq * t)
    return np.stack([0.6 * tone, 0.2 * tone]).astype(np.float32)  # mono mix = 0.4 * tone


def _encode(path: Path, planes: npt.NDArray[np.float32], rate: int, codec: str) -> Path:
    """Write (C, N) float samples with PyAV; the format follows the file extension."""
    layout = "stereo" if planes.shape[0] == 2 else "mono"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        step = 1024
        for start in range(0, planes.shape[1], step):
            chunk = np.ascontiguousarray(planes[:, start : start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _write_wav_s16(path: Path, samples: npt.NDArray[np.int16], rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def _dominant_hz(x: npt.NDArray[np.float32], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


# -- real fixtures --------------------------------------------------------------------------


def test_fixture_16k_mono_matches_reference_golden(fixtures_dir: Path, golden_dir: Path) -> None:
    golden = np.load(golden_dir / "generator_golden.npz")
    audio = load_audio(fixtures_dir / "audio_1.wav")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.shape[0] == 159_382  # 16 kHz file: no resampling, every sample kept
    # The reference (librosa.load) produced exactly these samples.
    np.testing.assert_array_equal(audio[:48_000], golden["audio_16k"])
    np.testing.assert_allclose(
        normalize_utterance(audio[:48_000]), golden["audio_normalized"], rtol=0, atol=1e-6
    )


@pytest.mark.parametrize(("name", "seconds"), [("audio_2.wav", 7.6858), ("audio_3.wav", 14.675)])
def test_fixture_44k_stereo_is_resampled_to_16k_mono(
    fixtures_dir: Path, name: str, seconds: float
) -> None:
    audio = load_audio(fixtures_dir / name)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.shape[0] - seconds * SAMPLE_RATE) <= 2
    assert 0.01 < float(np.abs(audio).max()) <= 1.0
    assert abs(float(audio.mean())) < 0.01


# -- generated files in every common format --------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "codec", "rate"),
    [
        ("wav", "pcm_s16le", 44_100),
        ("wav", "pcm_s16le", 48_000),
        ("flac", "flac", 48_000),
        ("mp3", "libmp3lame", 44_100),
        ("ogg", "vorbis", 44_100),
        ("ogg", "libopus", 48_000),
        ("m4a", "aac", 48_000),
    ],
)
def test_common_formats_decode_to_16k_mono(
    tmp_path: Path, suffix: str, codec: str, rate: int
) -> None:
    seconds = 1.5
    path = _encode(tmp_path / f"tone.{suffix}", _tone(rate, seconds), rate, codec)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Lossy codecs add a little encoder delay/padding; never more than ~0.1 s.
    assert abs(audio.shape[0] / SAMPLE_RATE - seconds) < 0.1
    assert abs(_dominant_hz(audio, SAMPLE_RATE) - 440.0) < 2.0
    # Channels are averaged, as librosa.load's to_mono does: a (0.6 + 0.2) / 2 = 0.4 sine,
    # RMS 0.4 / sqrt(2). RMS, not peak: lossy codecs ring on a pure tone.
    middle = audio[SAMPLE_RATE // 4 : SAMPLE_RATE]
    rms = float(np.sqrt(np.mean(middle.astype(np.float64) ** 2)))
    assert rms == pytest.approx(0.4 / math.sqrt(2), rel=0.06)


def test_lossless_stereo_mix_is_exact_average(tmp_path: Path) -> None:
    rate = 16_000  # no resampling, so the mono mix can be compared sample by sample
    planes = _tone(rate, 0.5)
    audio = load_audio(_encode(tmp_path / "t.flac", planes, rate, "flac"))
    quantized = np.round(planes * 32768) / 32768  # flac stores 16-bit integers
    np.testing.assert_allclose(audio, quantized.mean(axis=0), atol=1e-6)


def test_audio_track_of_a_video_file(fixtures_dir: Path) -> None:
    audio = load_audio(fixtures_dir / "driving_1.mp4")
    assert abs(audio.shape[0] / SAMPLE_RATE - 3.947) < 0.05


# -- rejected inputs -------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_folder_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="folder"):
        load_audio(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty"):
        load_audio(path)


def test_random_bytes_are_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioFileError, match="not an audio file") as info:
        load_audio(path)
    assert "noise.wav" in str(info.value)


def test_image_is_not_audio(fixtures_dir: Path) -> None:
    with pytest.raises(AudioFileError, match=r"no audio track|not an audio file"):
        load_audio(fixtures_dir / "source_1.png")


def test_video_without_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "silent_movie.mp4"
    with Mp4Writer(path, width=64, height=64, fps=25) as writer:
        for _ in range(5):
            writer.write(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(AudioFileError, match="no audio track") as info:
        load_audio(path)
    assert "video" in str(info.value)


def test_wav_without_samples(tmp_path: Path) -> None:
    path = _write_wav_s16(tmp_path / "zero.wav", np.zeros(0, np.int16), 16_000)
    with pytest.raises(AudioFileError, match="no audio samples"):
        load_audio(path)


def test_digital_silence_is_its_own_error(tmp_path: Path) -> None:
    path = _write_wav_s16(tmp_path / "quiet.wav", np.zeros(16_000, np.int16), 16_000)
    with pytest.raises(SilentAudioError, match="silent"):
        load_audio(path)


def test_dither_level_noise_counts_as_silent_but_quiet_speech_does_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    dither = rng.integers(-1, 2, 16_000).astype(np.int16)  # +-1 LSB: -90 dBFS
    with pytest.raises(SilentAudioError):
        load_audio(_write_wav_s16(tmp_path / "dither.wav", dither, 16_000))
    quiet = (np.sin(np.arange(16_000) / 5) * 30).astype(np.int16)  # about -60 dBFS
    assert load_audio(_write_wav_s16(tmp_path / "quiet.wav", quiet, 16_000)).size == 16_000


def test_truncated_mp3_header_is_corrupt(tmp_path: Path) -> None:
    good = _encode(tmp_path / "good.mp3", _tone(44_100, 1.0), 44_100, "libmp3lame")
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(AudioFileError):
        load_audio(bad)


def test_too_long_is_rejected_with_the_limit(fixtures_dir: Path) -> None:
    with pytest.raises(AudioFileError, match=r"too long.*limit is 5 s"):
        load_audio(fixtures_dir / "audio_1.wav", max_seconds=5)


def test_length_cap_also_holds_without_a_container_duration(tmp_path: Path) -> None:
    # A raw ADTS stream carries no duration, so only the running sample count can stop it.
    path = _encode(tmp_path / "long.aac", _tone(16_000, 3.0), 16_000, "aac")
    with pytest.raises(AudioFileError, match="too long"):
        load_audio(path, max_seconds=1.0)


# -- normalisation and frame padding ---------------------------------------------------------


def test_normalize_utterance_formula() -> None:
    x = np.random.default_rng(2).normal(0.3, 0.1, 10_000).astype(np.float32)
    y = normalize_utterance(x)
    assert y.dtype == np.float32
    assert abs(float(y.mean())) < 1e-5
    assert float(y.std()) == pytest.approx(1.0, abs=1e-4)
    expected = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    # The epsilon keeps a constant signal finite.
    assert np.all(np.isfinite(normalize_utterance(np.ones(100, np.float32))))


def _reference_pad(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """FMGenerator.sample + AudioEncoder._pad_audio, restated with numpy."""
    frames = math.ceil(x.shape[0] * 25 / 16000)
    target = int(frames * 16000 / 25)
    if x.shape[0] % target != 0:
        x = np.concatenate([x, np.full(target - x.shape[0] % target, x[-1], np.float32)])
    return x


@pytest.mark.parametrize("n", [1, 639, 640, 641, 1279, 1280, 48_000, 48_001, 159_382])
def test_pad_to_frames_matches_reference_semantics(n: int) -> None:
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    padded = pad_to_frames(x)
    np.testing.assert_array_equal(padded, _reference_pad(x))
    assert padded.shape[0] % SAMPLES_PER_FRAME == 0
    assert padded.shape[0] // SAMPLES_PER_FRAME == num_frames(n) == math.ceil(n * 25 / 16000)
    np.testing.assert_array_equal(padded[:n], x)
    assert np.all(padded[n:] == x[-1])


def test_num_frames_is_exact_for_long_inputs() -> None:
    assert num_frames(0) == 0
    assert num_frames(16_000 * 3600) == 25 * 3600
    assert num_frames(16_000 * 3600 + 1) == 25 * 3600 + 1


def test_pad_rejects_empty_and_multichannel() -> None:
    with pytest.raises(ValueError, match="empty"):
        pad_to_frames(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        pad_to_frames(np.zeros((2, 100), np.float32))
