"""An audio file as the source (issue 24, item 12): chosen in the Source panel, remembered in
the settings, and played by the app's live session as the voice (the runtime's FileInput)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from desktop_app.runtime_services import live as live_services
from desktop_app.runtime_services import runtime_backend
from desktop_app.runtime_services.devices import RuntimeDevices
from desktop_app.services import LiveCallbacks, LiveConfig, SourceUnavailable
from desktop_app.settings import Output, Pose, Quality, Settings, SettingsStore
from desktop_app.source_panel import NO_FILE, SourcePanel
from tests.support.fakes import virtual_camera as fakecam
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import WindowFactory
from tests.support.stub_graphs import write_stub_graphs


def _devices() -> RuntimeDevices:
    sound = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, loop=True)
    return RuntimeDevices(sd=sound, webcam_lister=lambda: ["0: Fake Camera"], platform="linux")


def test_choosing_a_file_makes_it_the_source(qtbot: QtBot, fixtures_dir: Path) -> None:
    panel = SourcePanel(_devices(), kind="microphone", microphone=None, webcam=None)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.file_name.text() == NO_FILE and not panel.choose_file.isEnabled()
    devices: list[object] = []
    files: list[object] = []
    panel.source_changed.connect(lambda kind, device: devices.append((kind, device)))
    panel.file_source_chosen.connect(files.append)
    recording = fixtures_dir / "audio_1.wav"
    panel.set_audio_file(recording)
    assert panel.kind == "file" and panel.audio_file == recording
    assert files == [recording] and devices == []  # microphone receivers never see a path
    assert panel.file_name.text() == "audio_1.wav" and panel.file_name.toolTip() == str(recording)
    assert panel.choose_file.isEnabled() and not panel.mic_combo.isEnabled()
    assert not panel.test_button.isEnabled()  # nothing to test: the file plays when live
    panel.mic_radio.setChecked(True)
    assert devices == [("microphone", None)] and panel.kind == "microphone"
    # Reopened with the file as the source (the settings keep kind and path).
    again = SourcePanel(
        _devices(), kind="file", microphone=None, webcam=None, audio_file=str(recording)
    )
    qtbot.addWidget(again)
    assert again.kind == "file" and again.audio_file == recording


def test_settings_keep_the_file_source(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.save(Settings(source="file", audio_file="/music/take 1.wav"))
    loaded, notice = store.load()
    assert notice is None
    assert loaded.source == "file" and loaded.audio_file == "/music/take 1.wav"


def _config(avatar: np.ndarray, audio_file: Path | None) -> LiveConfig:
    return LiveConfig(
        avatar=avatar,
        avatar_id="a",
        source="file",
        microphone=None,
        webcam=None,
        pose=Pose(),
        quality=Quality(),
        output=Output(width=512, height=512, background="none"),
        virtual_camera=False,
        audio_file=audio_file,
    )


def test_the_live_session_plays_the_file(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"IMTALKER_{name}_DIR", str(tmp_path / name.lower()))
    fakecam.register()
    graphs = write_stub_graphs(tmp_path / "graphs")
    sound = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, loop=True)
    backend = runtime_backend(graphs_dir=graphs, sound_device=sound, vcam_backend="fake")  # type: ignore[arg-type]
    avatar = np.full((256, 256, 3), 128, np.uint8)
    with pytest.raises(SourceUnavailable, match="Choose an audio file"):
        backend.engine.start(_config(avatar, None), LiveCallbacks(_ignore, _ignore))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    with pytest.raises(SourceUnavailable, match=r"broken\.wav"):
        backend.engine.start(_config(avatar, broken), LiveCallbacks(_ignore, _ignore))
    pictures = threading.Event()
    errors: list[str] = []
    session = backend.engine.start(
        _config(avatar, fixtures_dir / "audio_1.wav"),
        LiveCallbacks(lambda picture: pictures.set(), errors.append),
    )
    try:
        assert pictures.wait(60.0)
        health = session.stats().source
        assert health is not None and health.kind == "file"
    finally:
        session.stop()
    assert errors == []
    assert sound.streams == []  # the microphone was never opened


def _ignore(_: object) -> None:
    pass


def test_a_go_live_decodes_the_file_once_and_a_changed_file_again(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Go Live checks the source (the bridge, before the "not real time" question), then
    starts: the check's decode is what the session plays, unless the file changed between."""
    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"IMTALKER_{name}_DIR", str(tmp_path / name.lower()))
    fakecam.register()
    graphs = write_stub_graphs(tmp_path / "graphs")
    sound = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, loop=True)
    backend = runtime_backend(graphs_dir=graphs, sound_device=sound, vcam_backend="fake")  # type: ignore[arg-type]
    engine = backend.engine
    decoded: list[int] = []  # the length of each decode, in samples
    real = live_services.load_audio

    def counting(path: Any, **options: Any) -> Any:
        samples = real(path, **options)
        decoded.append(len(samples))
        return samples

    monkeypatch.setattr(live_services, "load_audio", counting)
    speech = tmp_path / "speech.wav"
    shutil.copyfile(fixtures_dir / "audio_1.wav", speech)
    config = _config(np.full((256, 256, 3), 128, np.uint8), speech)

    def go_live(*, checked: bool = True, meanwhile: Any = None) -> None:
        if checked:
            engine.check_source(config)
        if meanwhile is not None:
            meanwhile()  # while the question is open
        engine.start(config, LiveCallbacks(_ignore, _ignore)).stop()

    go_live()
    first = len(real(speech))
    assert decoded == [first]  # the check's decode went on to the session
    go_live(meanwhile=lambda: shutil.copyfile(fixtures_dir / "audio_2.wav", speech))
    second = len(real(speech))
    assert second != first and decoded == [first, first, second]  # the new file, decoded again
    stat = speech.stat()
    touched = (stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000)
    go_live(meanwhile=lambda: os.utime(speech, ns=touched))  # same size, a newer time
    assert decoded == [first, first, second, second, second]
    go_live()
    go_live(checked=False)  # started without the question: its own decode
    assert decoded == [first, first, second, second, second, second, second]


def test_the_window_goes_live_on_the_chosen_file(
    qtbot: QtBot, make_window: WindowFactory, fixtures_dir: Path
) -> None:
    """Through the whole window: the file chosen in the Source panel is saved as the source
    and Go Live plays it (the microphone, which would also give sound, is never opened)."""
    sound = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, name="Fake Mic", loop=True)
    window = make_window(sound=sound)
    speech = fixtures_dir / "audio_1.wav"
    window.source.set_audio_file(speech)
    assert window.settings.source == "file" and window.settings.audio_file == str(speech)
    window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 10, timeout=20_000)
    assert not sound.streams, "the microphone was opened for a file source"
    window.live.toggle()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
