"""A session's outputs from one typed configuration (`runtime.sinks.outputs`), the builder the
CLI and the app both get their sinks from: the preview and the virtual camera share the
composed picture and follow a new look live (a new size reopens the camera), the on-demand
recording is the composed picture, the whole session's recording the raw frames, and the camera
says why it is not there."""

from __future__ import annotations

import shutil
import threading
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from runtime.core.timing import FrameTiming
from runtime.sinks import SinkSet
from runtime.sinks.composed import RecordingFailed
from runtime.sinks.frame import LiveFrame
from runtime.sinks.outputs import NO_CAMERA, Outputs, OutputsConfig
from runtime.sinks.virtual_camera import VirtualCameraConfig, blurred_backdrop
from tests.support.fakes import virtual_camera as fakecam

RED = (200, 10, 10)


def face(value: int = 200) -> np.ndarray:
    img = np.full((256, 256, 3), value, np.uint8)
    img[:, :128, 0] = 10  # the left half has little red: mirroring shows
    return img


def frame(index: int, image: np.ndarray | None = None) -> LiveFrame:
    return LiveFrame(
        index=index,
        image=face() if image is None else image,
        timing=FrameTiming(capture=time.perf_counter()),
    )


def look(
    width: int = 640,
    height: int = 360,
    *,
    mirror: bool = False,
    background: tuple[int, int, int] = (0, 0, 0),
    blur: bool = False,
) -> VirtualCameraConfig:
    return VirtualCameraConfig(
        width=width, height=height, mirror=mirror, background=background, blur=blur, backend="fake"
    )


def started(config: OutputsConfig, avatar: np.ndarray | None = None) -> tuple[Outputs, SinkSet]:
    outputs = Outputs(config, avatar=face(90) if avatar is None else avatar)
    sinks = SinkSet(outputs.sinks)
    sinks.open_all(fps=25)
    return outputs, sinks


def test_the_default_sends_nowhere_and_a_front_end_names_each_output(tmp_path: Path) -> None:
    nothing = Outputs(OutputsConfig(), avatar=face())
    assert nothing.sinks == () and nothing.camera().reason == NO_CAMERA
    assert nothing.audio_level is None and nothing.end_recording() is None
    assert nothing.wait_recorded(0.0)
    with pytest.raises(ValueError, match="no on-demand recording"):
        nothing.begin_recording(tmp_path / "x.mp4")
    every = Outputs(
        OutputsConfig(
            virtual_camera=True,
            preview=lambda picture: None,
            recording_tap=True,
            record=tmp_path / "all.mp4",
        ),
        avatar=face(),
    )
    assert [s.name for s in every.sinks] == ["preview", "virtual camera", "recording", "recorder"]


def test_preview_and_camera_follow_a_new_look_live() -> None:
    """Mirror and background change on the open camera; a new size reopens it; the preview
    gets the same composed picture, new frames only."""
    fakecam.register()
    shown: list[np.ndarray] = []
    outputs, sinks = started(
        OutputsConfig(
            look=look(background=RED), virtual_camera=True, preview=lambda p: shown.append(p.copy())
        )
    )
    camera = fakecam.RecordingBackend.instances[-1]
    info = outputs.camera()
    assert info.open and info.backend == "fake" and info.device == "FakeCam 0"
    sinks.send(frame(0), False)
    sinks.send(frame(0), True)  # a repeat: the camera sends it again, the preview not
    assert len(camera.times) == 2 and len(shown) == 1
    assert shown[0].shape == (360, 640, 3) and tuple(shown[0][180, 10]) == RED
    assert shown[0][180, 200, 0] == 10 and shown[0][180, 440, 0] == 200  # face, not mirrored

    outputs.set_look(look(mirror=True, background=(1, 2, 3)))
    sinks.send(frame(1), False)
    assert fakecam.RecordingBackend.instances[-1] is camera  # in place, not reopened
    probe = camera.probes[-1]  # (every 8th pixel)
    assert tuple(probe[22, 1]) == (1, 2, 3) and probe[22, 25, 0] == 200 and probe[22, 55, 0] == 10
    assert np.array_equal(shown[-1][::8, ::8], probe)

    outputs.set_look(look(320, 240))
    sinks.send(frame(2), False)
    reopened = fakecam.RecordingBackend.instances[-1]
    assert reopened is not camera and camera.closed
    assert (reopened.width, reopened.height) == (320, 240) and len(reopened.times) == 1
    assert shown[-1].shape == (240, 320, 3)
    sinks.close_all()
    assert reopened.closed and not outputs.camera().open


def test_the_blurred_backdrop_follows_the_avatar() -> None:
    fakecam.register()
    dark = np.zeros((256, 256, 3), np.uint8)
    outputs, sinks = started(OutputsConfig(look=look(blur=True), virtual_camera=True), dark)
    camera = fakecam.RecordingBackend.instances[-1]
    sinks.send(frame(0), False)
    bright = np.full((256, 256, 3), 240, np.uint8)
    outputs.set_avatar(bright)
    sinks.send(frame(1), False)
    sinks.close_all()
    before, after = camera.probes[0][:, :10], camera.probes[1][:, :10]
    assert before.max() == 0 and abs(float(after.mean()) - 240 * 0.7) < 3


def test_a_camera_that_cannot_open_says_why_and_the_others_run() -> None:
    fakecam.register()
    shown: list[np.ndarray] = []
    outputs, sinks = started(
        OutputsConfig(
            look=VirtualCameraConfig(backend="fake-busy"),
            virtual_camera=True,
            preview=shown.append,
        )
    )
    info = outputs.camera()
    assert not info.open and info.reason and "in use by another application" in info.reason
    assert info.reason == next(s.unavailable for s in sinks.statuses() if not s.open)
    sinks.send(frame(0), False)
    assert len(shown) == 1


def tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_an_on_demand_recording_is_the_composed_picture_at_the_size_it_began(
    tmp_path: Path,
) -> None:
    """Begun and ended on demand; the audio is metered whether recording or not; a new
    background follows the look, a new size leaves the file as it began (size and look)."""
    outputs, sinks = started(OutputsConfig(look=look(320, 180, background=RED), recording_tap=True))
    tap = next(s for s in sinks.sinks() if s.name == "recording")
    audio = tap.add_audio  # type: ignore[attr-defined]
    audio(0, tone(0.1, 0.5))
    assert outputs.audio_level is not None and outputs.audio_level > 0.8
    audio(1600, np.zeros(1600, np.float32))
    assert outputs.audio_level == 0.0
    path = tmp_path / "take.mp4"
    outputs.begin_recording(path)
    for i in range(25):
        audio(640 * i, tone(0.04, 0.3))
        sinks.send(frame(i), False)
        if i == 8:
            outputs.set_look(look(320, 180, background=(0, 0, 255)))
        if i == 16:
            outputs.set_look(look(640, 360, background=(0, 255, 0)))
    assert outputs.end_recording() == path and outputs.end_recording() is None
    sinks.close_all()
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (320, 180)
        assert container.streams.audio
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(pictures) == 25
    around = [p[90, 10].astype(int) for p in pictures]
    assert np.abs(around[0] - RED).max() < 12  # the colour around the face
    assert np.abs(around[12] - (0, 0, 255)).max() < 12  # a new background follows the look
    assert np.abs(around[-1] - (0, 0, 255)).max() < 12  # a new size does not


def test_a_recording_that_cannot_begin_or_be_written_raises_the_runtimes_error(
    tmp_path: Path,
) -> None:
    outputs, sinks = started(OutputsConfig(look=look(320, 180), recording_tap=True))
    with pytest.raises(RecordingFailed, match="does not exist"):
        outputs.begin_recording(tmp_path / "missing" / "x.mp4")
    folder = tmp_path / "gone"
    folder.mkdir()
    outputs.begin_recording(folder / "x.mp4")
    shutil.rmtree(folder)  # the claimed file goes too: the writer cannot open it
    sinks.send(frame(0), False)
    with pytest.raises(RecordingFailed, match="the recording failed"):
        outputs.end_recording()
    sinks.close_all()


def test_the_whole_session_recording_keeps_the_raw_frames(tmp_path: Path) -> None:
    """`record` (the CLI's --record) is the engine's frames as they are, not the composed
    picture, and `wait_recorded` waits for the file."""
    path = tmp_path / "session.mp4"
    outputs, sinks = started(OutputsConfig(look=look(640, 360, mirror=True), record=path))
    for i in range(10):
        sinks.send(frame(i), False)
    sinks.close_all()
    assert outputs.wait_recorded(60.0) and path.is_file()
    with av.open(str(path)) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert pictures[0].shape == (256, 256, 3)
    assert pictures[0][128, 20, 0] < 40 and pictures[0][128, 230, 0] > 160  # not mirrored


def _wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((tone(seconds, 0.3) * 32767).astype(np.int16).tobytes())
    return path


def test_the_cli_and_the_app_get_their_camera_from_the_same_builder(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`live --background blur` and the app's Output(background="blur") both reach the camera
    through `OutputsConfig` -> `Outputs` in `start_session`: the same avatar gives the very
    same blurred backdrop around the face in both."""
    from desktop_app.runtime_services import runtime_backend
    from desktop_app.services import LiveCallbacks, LiveConfig
    from desktop_app.settings import Output, Pose, Quality
    from runtime.commands import cli
    from runtime.commands import live as live_cmd
    from runtime.media.face_crop import prepare_avatar
    from runtime.model.compile.graph_version import graphs_version
    from tests.support.fakes.sound_device import FakeSoundDevice
    from tests.support.stub_graphs import write_stub_graphs
    from tests.support.virtual_clock import VirtualClock

    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"IMTALKER_{name}_DIR", str(tmp_path / name.lower()))
    fakecam.register()
    graphs = write_stub_graphs(tmp_path / "graphs")
    photo = fixtures_dir / "source_1.png"
    audio = _wav(tmp_path / "a.wav", 1.0)
    args = cli.build_parser().parse_args(
        [
            *("live", "--avatar", str(photo), "--audio-file", str(audio), "--graphs", str(graphs)),
            *("--background", "blur", "--vcam-size", "640x360", "--vcam-backend", "fake"),
            *("--duration", "0.5"),
        ]
    )
    clock = VirtualClock(real_timeout_s=60.0)
    clock.join()
    with clock.adopting():
        assert live_cmd.run(args, clock=clock) == 0
    clock.leave()
    by_cli = fakecam.RecordingBackend.instances[-1]

    backend = runtime_backend(
        graphs_dir=graphs,
        sound_device=FakeSoundDevice(np.zeros(16000, np.float32), 16_000, loop=True),  # type: ignore[arg-type]
        vcam_backend="fake",
    )
    avatar = prepare_avatar(photo).image_at(graphs_version(graphs).source_size)
    config = LiveConfig(
        avatar=avatar,
        avatar_id="source_1",
        source="microphone",
        microphone=None,
        webcam=None,
        pose=Pose(),
        quality=Quality(),
        output=Output(width=640, height=360, background="blur"),
        virtual_camera=True,
    )
    pictures = threading.Event()
    errors: list[str] = []
    session = backend.engine.start(config, LiveCallbacks(lambda p: pictures.set(), errors.append))
    try:
        assert pictures.wait(30.0)
    finally:
        session.stop()  # (the camera has the picture the preview was given: sent right after)
    assert not errors
    by_app = fakecam.RecordingBackend.instances[-1]
    assert by_app is not by_cli and by_cli.probes and by_app.probes
    # Left of the face (x < 140; the probes keep every 8th pixel): the backdrop.
    expected = blurred_backdrop(avatar, 640, 360)[::8, ::8][:, :17]
    assert np.array_equal(by_cli.probes[0][:, :17], expected)
    assert np.array_equal(by_app.probes[0][:, :17], expected)
    assert expected.std() > 1.0  # the avatar blurred, not a flat colour
