"""End to end through a real audio server: a user-space PulseAudio whose default input is a
null sink's monitor; fixture speech is played into it with `paplay` and the engine captures it
through sounddevice/PortAudio exactly as it would a microphone (native rate, resampled)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.engine.live.engine import LiveEngine, MicrophoneInput
from runtime.engine.live.types import LiveControls
from runtime.model.execution.sessions import ModelSet
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink
from tests.support.fakes import virtual_camera as fakecam
from tests.support.live import Tap, grey_avatar, stub_models, wav_16k, write_wav_16k
from tests.support.pulseaudio import pulseaudio_server

pytestmark = pytest.mark.slow


@pytest.fixture
def pulse(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    base = Path(tmp_path_factory.mktemp("pa", numbered=True))
    tools = ("pulseaudio", "paplay", "pactl", "parec")
    with pulseaudio_server(base, tools=tools) as server:
        for key, value in server.items():
            monkeypatch.setenv(key, value)
        import sounddevice

        # PortAudio lists devices once, when it starts: restart it inside this environment.
        sounddevice._terminate()
        sounddevice._initialize()
        try:
            yield
        finally:
            monkeypatch.undo()
            sounddevice._terminate()
            sounddevice._initialize()


def envelope(audio: np.ndarray) -> np.ndarray:
    """RMS of each whole 640-sample frame, counted from the end (as the engine's windows)."""
    frames = audio[audio.size % 640 :].reshape(-1, 640)
    return np.sqrt((frames**2).mean(axis=1))


def test_speech_through_pulseaudio(pulse: None, tmp_path: Path, fixtures_dir: Path) -> None:
    import sounddevice

    fakecam.register()
    models: ModelSet = stub_models(tmp_path / "stubs")
    speech = wav_16k(fixtures_dir / "audio_1.wav")[: 16000 * 6]
    clip = write_wav_16k(tmp_path / "speech.wav", speech)
    tap = Tap()
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=sounddevice),
        sinks=[
            VirtualCameraSink(VirtualCameraConfig(width=640, height=360, backend="fake")),
            tap.preview(),
        ],
        listener=tap.listener(),
    )
    # A fixed hop: the expected features below are laid out for 5-frame hops (Auto would
    # choose 1 with stub graphs).
    engine.start(grey_avatar(models, 100), LiveControls(hop=5))
    try:
        assert tap.wait_event("audio", "running", timeout=10) is not None, tap.events
        time.sleep(1.0)  # real: a second of the real audio server's silence before the speech
        t_play = time.perf_counter()
        subprocess.run(["paplay", str(clip)], check=True, timeout=30, env=os.environ.copy())
        time.sleep(1.0)  # real: and after it, so the speech's last hops are generated
        stats = engine.stats()
    finally:
        assert engine.stop()
    assert stats.audio is not None and stats.audio.state.value == "running"
    assert stats.audio.native_rate in (44100, 48000)  # the server's rate, resampled to 16 kHz
    # The generator's input features of each emitted frame, with each frame's capture time.
    hops = [h for h in tap.hops if h.emitted == 5]
    assert len(hops) > 20, [h.emitted for h in tap.hops]
    captured = np.concatenate([h.capture for h in hops]) - t_play
    level = np.concatenate([h.features[: h.emitted, 0] for h in hops])
    # What they should be if the clip was captured `lag` seconds after paplay started: the
    # engine normalises each 2.28 s window (50 frames of context, the hop, 2 of lookahead)
    # before the encoder, and the stub encoder gives each frame's RMS.
    padded = np.concatenate([np.zeros(16000 * 4, np.float32), speech, np.zeros(16000 * 4)])

    def expected(lag: float) -> np.ndarray:
        out = []
        for h in hops:
            start = round((h.capture[0] - t_play - lag) * 16000) - 640 + 16000 * 4
            window = padded[max(0, start - 50 * 640) : start + 7 * 640]
            window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
            out.append(envelope(window)[-7:-2])
        return np.concatenate(out)

    corr, lag = max(
        (float(np.corrcoef(level, expected(lag))[0, 1]), float(lag))
        for lag in np.arange(-0.1, 0.5, 0.01)
    )
    # The speech shows up in the features at the time it was played (plus the server's small
    # latency), with the right shape.
    assert corr > 0.95, (corr, lag)
    assert -0.02 <= lag < 0.3, (corr, lag)
    before = level[captured < -0.1]
    assert before.size and before.max() < 1e-3  # silence before the clip
    # The frame clock held.
    cam = fakecam.RecordingBackend.instances[-1].times
    rate = (len(cam) - 1) / (cam[-1] - cam[0])
    assert abs(rate - 25) / 25 < 0.02
