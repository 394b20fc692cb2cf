"""The audio timeline (indices, wrap-around, capture clock) and the feature windows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from runtime.engine.features import (
    frames_for_samples,
    normalize,
    pad_to_frames,
    utterance_features,
    window_features,
)
from runtime.engine.live.audio_timeline import AudioTimeline
from tests.support.live import CPU
from tests.support.stub_graphs import write_stub_graphs


def test_timeline_keeps_indices_across_wraparound() -> None:
    tl = AudioTimeline(keep_seconds=1.0)
    t = 100.0
    for k in range(30):  # 3 s in 100 ms chunks, the ring holds 1 s
        chunk = np.arange(k * 1600, (k + 1) * 1600, dtype=np.float32)
        t += 0.1
        tl.append(chunk, end_time=t)
    assert tl.total == 48000 and tl.oldest == 32000 and tl.frames == 75
    np.testing.assert_array_equal(tl.samples(40000, 40010), np.arange(40000, 40010))
    with pytest.raises(IndexError):
        tl.samples(10, 20)
    assert abs(tl.capture_time(47999) - t) < 1e-9
    assert abs(tl.frame_capture_time(74) - t) < 1e-9
    assert abs(tl.frame_capture_time(70) - (t - 4 * 0.04)) < 1e-9


def test_capture_clock_filters_late_callbacks() -> None:
    """Blocks reported late by scheduling jitter do not move the capture times."""
    tl = AudioTimeline()
    rng = np.random.default_rng(0)
    t0 = 50.0
    for k in range(100):  # 10 ms blocks, each reported 0..8 ms late
        end = t0 + (k + 1) * 0.01
        tl.append(np.zeros(160, np.float32), end_time=end + rng.uniform(0, 0.008))
    for i in (0, 5000, 15999):
        truth = t0 + (i + 1) / 16000
        assert 0 <= tl.capture_time(i) - truth < 0.001


def test_new_segments_for_restarts_and_silence() -> None:
    tl = AudioTimeline()
    tl.append(np.ones(1600, np.float32), end_time=10.1)
    tl.append_silence(3200, end_time=12.0)  # the device was gone for a while
    tl.append(np.ones(1600, np.float32), end_time=20.1, new_segment=True)
    assert abs(tl.capture_time(1599) - 10.1) < 1e-9
    assert abs(tl.capture_time(4799) - 12.0) < 1e-9
    assert abs(tl.capture_time(6399) - 20.1) < 1e-9
    assert tl.samples(1600, 4800).max() == 0


def test_pad_last_frame_repeats_the_last_sample() -> None:
    tl = AudioTimeline()
    tl.append(np.arange(1000, dtype=np.float32), end_time=1.0)
    assert tl.pad_last_frame() == 280 and tl.frames == 2
    assert (tl.samples(999, 1280) == 999).all()
    assert tl.pad_last_frame() == 0


def test_normalisation_and_padding_match_the_reference_recipe(golden_dir: Path) -> None:
    g = np.load(golden_dir / "generator_golden.npz")
    np.testing.assert_allclose(normalize(g["audio_16k"]), g["audio_normalized"], atol=1e-6)
    assert frames_for_samples(48000) == 75 and frames_for_samples(48001) == 76
    padded = pad_to_frames(np.arange(5, dtype=np.float32), 1)
    assert padded.size == 640 and (padded[4:] == 4).all()


def test_window_features_take_the_last_frames(tmp_path: Path) -> None:
    from runtime.model.execution.model_set import open_model_set

    models = open_model_set(write_stub_graphs(tmp_path), options=CPU, names=("audio_encoder",))
    from runtime.engine.features import encoder_from_session

    encode = encoder_from_session(models["audio_encoder"])
    audio = np.random.default_rng(1).standard_normal(640 * 10).astype(np.float32)
    audio[640 * 9 :] *= 3.0  # the last frame is louder
    feats = window_features(encode, audio, last_frames=3)
    assert feats.shape == (3, 768)
    norm = normalize(audio).reshape(10, 640)
    rms = np.sqrt((norm**2).mean(axis=1))
    np.testing.assert_allclose(feats[:, 0], rms[-3:], rtol=1e-5)
    whole = utterance_features(encode, audio[:-100])
    assert whole.shape == (10, 768)
    with pytest.raises(ValueError):
        window_features(encode, audio[:-1], last_frames=1)
    assert math.isclose(float(feats[-1, 5]), float(rms[-1]), rel_tol=1e-5)
