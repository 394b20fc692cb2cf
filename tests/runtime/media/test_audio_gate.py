"""Noise gate, mute and push-to-talk: the signal processing, and the gate in the live engine's
real feature/sampler path (stub graphs, a recording fed through the microphone path)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from runtime.engine.live.engine import EngineConfig, FileInput, LiveControls, LiveEngine
from runtime.media.audio_gate import GateConfig, MicSwitch, NoiseGate
from runtime.model.execution.sessions import ModelSet
from tests.support.live import Tap, grey_avatar, stub_models, wav_16k

RATE = 16_000


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level (full scale = 1.0) in dBFS; -inf for digital silence."""
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def room_noise(seconds: float, level_dbfs: float, seed: int = 3) -> np.ndarray:
    """A fan (low-passed noise hum) plus typing (short decaying clicks, 6 a second), scaled
    to `level_dbfs` RMS overall."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    white = rng.standard_normal(n)
    fan = np.convolve(white, np.ones(24) / 24, mode="same")
    fan += 0.3 * np.sin(2 * np.pi * 120 * np.arange(n) / RATE)
    clicks = np.zeros(n)
    click = rng.standard_normal(64) * np.exp(-np.arange(64) / 12)
    for at in rng.integers(0, n - 64, size=int(6 * seconds)):
        clicks[at : at + 64] += 4 * click
    mix = fan / fan.std() + clicks / max(clicks.std(), 1e-9)
    out = mix / np.sqrt(np.mean(mix**2)) * 10 ** (level_dbfs / 20)
    return out.astype(np.float32)


def in_chunks(gate: NoiseGate, x: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 900))
        parts.append(gate.process(x[i : i + n]))
        i += n
    return np.concatenate(parts)


def test_noise_below_the_threshold_is_digital_silence() -> None:
    noise = room_noise(5.0, -50.0)
    assert abs(rms_dbfs(noise) - -50.0) < 0.1
    gate = NoiseGate(GateConfig(threshold_dbfs=-40.0), rate=RATE)
    out = in_chunks(gate, noise)
    assert np.all(out == 0)
    assert not gate.open


def test_speech_passes_whole_and_the_gate_never_clicks(fixtures_dir: Path) -> None:
    speech = wav_16k(fixtures_dir / "audio_1.wav")[: RATE * 6]
    quiet = np.zeros(RATE, np.float32)
    x = np.concatenate([quiet, speech, quiet, quiet])
    gate = NoiseGate(GateConfig(threshold_dbfs=-45.0), rate=RATE)
    out = in_chunks(gate, x, seed=1)
    assert out.shape == x.shape
    # Nearly all of the speech's energy passes (the gate opens within a window of a word).
    kept = float(np.sum(out[RATE : 7 * RATE] ** 2) / np.sum(speech**2))
    assert kept > 0.99, kept
    # Where the gate works, the gain moves by at most one attack step per sample: the output
    # never steps further than the input does (plus that ramp).
    assert np.max(np.abs(np.diff(out))) <= np.max(np.abs(np.diff(x))) + 1e-6
    # After the speech: hold, release, then exact silence.
    tail = out[7 * RATE :]
    assert np.all(tail[int(0.25 * RATE + 0.05 * RATE) + 1 :] == 0)


def test_chunking_does_not_change_the_output(fixtures_dir: Path) -> None:
    speech = wav_16k(fixtures_dir / "audio_1.wav")[: RATE * 3]
    x = np.concatenate([room_noise(1.0, -55), speech, room_noise(1.0, -55)])
    whole = NoiseGate(GateConfig(threshold_dbfs=-40.0), rate=RATE).process(x)
    pieces = in_chunks(NoiseGate(GateConfig(threshold_dbfs=-40.0), rate=RATE), x, seed=5)
    np.testing.assert_allclose(pieces, whole, atol=1e-7)


def test_gate_off_and_live_threshold_changes() -> None:
    noise = room_noise(1.0, -50.0)
    gate = NoiseGate(GateConfig(), rate=RATE)
    assert gate.threshold_dbfs is None
    np.testing.assert_array_equal(gate.process(noise), noise)
    gate.set_threshold(-40.0)
    gate.process(noise)  # the hold from the open gate runs out, then the release
    assert np.all(gate.process(noise) == 0)
    gate.set_threshold(-60.0)
    assert np.any(gate.process(noise) != 0)
    with pytest.raises(ValueError, match=r"-100\.\.0 dBFS"):
        gate.set_threshold(3.0)
    with pytest.raises(ValueError, match=r"-100\.\.0 dBFS"):
        GateConfig(threshold_dbfs=float("nan"))


def test_mute_and_push_to_talk_ramp_over_one_block() -> None:
    block = np.full(160, 0.5, np.float32)
    switch = MicSwitch()
    np.testing.assert_array_equal(switch.apply(block), block)
    switch.set_muted(True)
    ramp = switch.apply(block)
    assert ramp[0] > 0.49 and ramp[-1] == 0 and np.all(np.diff(ramp) <= 0)
    assert np.all(switch.apply(block) == 0)
    switch.set_muted(False)
    up = switch.apply(block)
    assert up[0] < 0.01 and up[-1] == 0.5
    switch.set_push_to_talk(True)  # key not held: closed
    assert not switch.is_open
    switch.apply(block)
    assert np.all(switch.apply(block) == 0)
    switch.set_talking(True)
    switch.apply(block)
    np.testing.assert_array_equal(switch.apply(block), block)
    switch.set_talking(False)
    switch.apply(block)
    assert np.all(switch.apply(block) == 0)
    switch.set_push_to_talk(False)
    assert switch.is_open


# -- the gate in the engine's real feature/sampler path --------------------------------------


HOP = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return stub_models(tmp_path_factory.mktemp("stubs"))


def motion_of(models: ModelSet, audio: np.ndarray, gate: GateConfig) -> dict[int, np.ndarray]:
    """Motion latents of every hop, by first frame, for `audio` played through the engine, up
    to its first skip-ahead. The hop is fixed and the noise seeded: with Auto the hop follows
    the measured compute, so two runs on a busy machine split the audio differently and a
    hop's motion context (the frames before it) differs for reasons that are not the gate's;
    after a skip the same holds. The end of the input gets one last step of hop + lookahead
    frames (`hop_choice.next_step`) from wherever the worker is when the file ends, which
    depends on the machine's speed, so the hops stop before it too."""
    tap = Tap()
    engine = LiveEngine(
        models=models,
        source=FileInput(audio=audio, name="room"),
        config=EngineConfig(gate=gate, seed=5),
        listener=tap.listener(),
    )
    engine.start(grey_avatar(models, 100), LiveControls(hop=HOP))
    try:
        assert engine.wait_audio_ended(timeout=30)
    finally:
        assert engine.stop()
    hops = {}
    for h in tap.hops:
        if h.skipped_before or len(h.motion) != HOP:
            break
        hops[h.first_frame] = h.motion
    assert len(hops) >= 5
    return hops


def test_gated_room_noise_drives_the_avatar_like_silence(models: ModelSet) -> None:
    noise = room_noise(1.6, -50.0)
    silence = np.zeros_like(noise)
    gate = GateConfig(threshold_dbfs=-40.0)
    quiet = motion_of(models, silence, gate)
    gated = motion_of(models, noise, gate)
    common = sorted(set(quiet) & set(gated))
    assert len(common) >= 5
    for k in common:
        np.testing.assert_array_equal(gated[k], quiet[k])
    # Without the gate the same noise moves the avatar: the engine normalises each window, so
    # a fan is as loud to the model as speech.
    ungated = motion_of(models, noise, GateConfig(threshold_dbfs=None))
    moved = [float(np.abs(ungated[k] - quiet[k]).max()) for k in common if k in ungated]
    assert max(moved) > 0.1, moved
