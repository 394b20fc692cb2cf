"""Sinks: virtual camera composition and backend reasons, isolation of failing sinks, preview,
and the MP4 recorder with audio placed by media time."""

from __future__ import annotations

import math
import time
from pathlib import Path

import av
import numpy as np
import pytest

from runtime.core.timing import FrameTiming
from runtime.sinks import SinkSet
from runtime.sinks.frame import LiveFrame
from runtime.sinks.preview import PreviewSink
from runtime.sinks.recorder import RecorderConfig, RecorderSink
from runtime.sinks.virtual_camera import (
    FrameComposer,
    VirtualCameraConfig,
    VirtualCameraSink,
    composer_for,
)
from tests.support.fakes import virtual_camera as fakecam


def face(value: int = 200) -> np.ndarray:
    img = np.full((512, 512, 3), value, np.uint8)
    img[:, :256, 0] = 10  # left half has little red: mirroring shows
    return img


def frame(index: int, image: np.ndarray | None = None) -> LiveFrame:
    return LiveFrame(
        index=index,
        image=face() if image is None else image,
        timing=FrameTiming(capture=time.perf_counter()),
    )


def test_composer_fits_face_on_background_and_mirrors() -> None:
    comp = FrameComposer(width=1280, height=720, background=(0, 0, 255))
    out = comp.compose(face())
    assert out.shape == (720, 1280, 3)
    assert (out[:, :280] == [0, 0, 255]).all() and (out[:, 1000:] == [0, 0, 255]).all()
    assert out[360, 300, 0] == 10 and out[360, 980, 0] == 200
    mirrored = FrameComposer(width=1280, height=720, mirror=True).compose(face())
    assert mirrored[360, 300, 0] == 200 and mirrored[360, 980, 0] == 10
    square = FrameComposer(width=512, height=512).compose(face())
    assert np.array_equal(square, face())


def test_camera_background_colour_or_blurred_avatar_and_a_new_look_in_place() -> None:
    """The camera's configuration carries its background (issue 21: the CLI and the app build
    the same thing): a colour, or the avatar itself blurred and darkened around the face; a
    new look (mirror, background) replaces the old without reopening, at the same size only."""
    avatar = np.zeros((512, 512, 3), np.uint8)
    avatar[:, :256] = 240  # a bright left half: the blur keeps it, darker and soft
    colour = composer_for(VirtualCameraConfig(width=640, height=360, background=(9, 8, 7)))
    assert (colour.compose(face())[:, :100] == [9, 8, 7]).all()
    blurred = composer_for(VirtualCameraConfig(width=640, height=360, blur=True), avatar)
    out = blurred.compose(face())
    left, right = out[180, 20].astype(int), out[180, 620].astype(int)
    assert abs(left.mean() - 240 * 0.7) < 3 and right.mean() < 10  # the avatar, darkened
    sink = VirtualCameraSink(VirtualCameraConfig(width=640, height=360, blur=True), avatar=avatar)
    sink.set_composer(colour)
    with pytest.raises(ValueError, match="another size"):
        sink.set_composer(composer_for(VirtualCameraConfig(width=320, height=180)))


def test_virtual_camera_sends_to_registered_backend() -> None:
    fakecam.register()
    sink = VirtualCameraSink(VirtualCameraConfig(width=640, height=360, backend="fake"))
    sink.open(fps=25)
    assert sink.backend == "fake" and sink.device == "FakeCam 0"
    for i in range(3):
        sink.send(frame(i), False)
    sink.close()
    cam = fakecam.RecordingBackend.instances[-1]
    assert cam.closed and len(cam.times) == 3 and cam.fps == 25
    assert cam.probes[0].shape == (45, 80, 3)


def test_no_backend_reports_pyvirtualcam_reason() -> None:
    fakecam.register()
    sinks = SinkSet(
        [VirtualCameraSink(VirtualCameraConfig(backend="fake-busy")), PreviewSink(lambda f: None)]
    )
    errors: list[tuple[str, str]] = []
    sinks._on_error = lambda n, m: errors.append((n, m))
    sinks.open_all(fps=25)
    vcam, preview = sinks.statuses()
    assert not vcam.open and vcam.unavailable
    assert "in use by another application" in vcam.unavailable
    assert errors and errors[0][0] == "virtual camera"
    assert preview.open
    sinks.send(frame(0), False)
    assert sinks.statuses()[1].frames == 1


def test_default_backends_reason_on_this_machine() -> None:
    """With every stock backend failing here (no v4l2loopback), the reason names it."""
    import pyvirtualcam

    stock = {k: v for k, v in pyvirtualcam.camera.BACKENDS.items() if not k.startswith("fake")}
    saved = dict(pyvirtualcam.camera.BACKENDS)
    pyvirtualcam.camera.BACKENDS.clear()
    pyvirtualcam.camera.BACKENDS.update(stock)
    try:
        sink = VirtualCameraSink(VirtualCameraConfig())
        try:
            sink.open(fps=25)
        except Exception as exc:
            assert any(name in str(exc) for name in stock), str(exc)
        else:
            sink.close()
            pytest.skip("a real virtual camera is available on this machine")
    finally:
        pyvirtualcam.camera.BACKENDS.clear()
        pyvirtualcam.camera.BACKENDS.update(saved)


def test_failing_sink_is_isolated() -> None:
    fakecam.register()
    fakecam.FailingBackend.fail_after = 2
    got: list[int] = []

    def boom(f: LiveFrame) -> None:
        raise ValueError("preview consumer crashed")

    sinks = SinkSet(
        [
            PreviewSink(boom),
            VirtualCameraSink(VirtualCameraConfig(width=64, height=64, backend="fake-failing")),
            PreviewSink(lambda f: got.append(f.index)),
        ]
    )
    sinks.open_all(fps=25)
    for i in range(5):
        sinks.send(frame(i), False)
    sinks.close_all()
    crashing, failing_cam, _ = sinks.statuses()
    assert crashing.errors == 5 and "preview consumer crashed" in (crashing.last_error or "")
    assert failing_cam.frames == 2 and failing_cam.errors == 3
    assert got == [0, 1, 2, 3, 4]


def decode(path: Path) -> tuple[list[float], np.ndarray, list[np.ndarray], float]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        times, frames = [], []
        for f in c.decode(v):
            times.append(float(f.pts * v.time_base))
            frames.append(f.to_ndarray(format="rgb24"))
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)])
        rate = a.rate
    return times, audio, frames, rate


def test_recorder_places_frames_and_audio_by_media_time(tmp_path: Path) -> None:
    """Frames 10..59 at 25 fps over a 3 s timeline where a 440 Hz tone starts at frame 30: in
    the file, the tone starts at 0.8 s and the bright frames start at 0.8 s too; the frame the
    pacer dropped is the one before it again, and the last frame holds to the audio's end."""
    out = tmp_path / "rec.mp4"
    rec = RecorderSink(RecorderConfig(path=out))
    rec.open(fps=25)
    sr = 16000
    t = np.arange(sr * 3) / sr
    audio = np.where(t >= 30 / 25, 0.5 * np.sin(2 * math.pi * 440 * t), 0.0).astype(np.float32)
    # Audio arrives early and in odd chunks, frames later; a repeat and a dropped index too.
    for s in range(0, audio.size, 700):
        rec.add_audio(s, audio[s : s + 700])
    for i in range(10, 60):
        if i == 40:
            continue  # dropped by the pacer
        img = np.full((512, 512, 3), 230 if i >= 30 else 20, np.uint8)
        rec.send(frame(i, img), False)
        if i == 20:
            rec.send(frame(i, img), True)  # a repeat is not recorded
    rec.close(timeout=5)
    assert rec.error is None and out.exists() and not list(tmp_path.glob(".*part"))
    times, sound, frames, rate = decode(out)
    # No idle picture was sent: the file starts at the first frame (10) and runs at 25 fps to
    # the audio's end (frame 75): 65 frames, the dropped one and the tail held.
    assert rate == sr and rec.frames_written == 65
    assert times[0] == 0.0
    np.testing.assert_allclose(np.diff(times), 1 / 25, atol=1e-6)
    bright = [tt for tt, f in zip(times, frames, strict=True) if f.mean() > 128]
    assert abs(bright[0] - 0.8) < 1e-6
    assert abs(times[-1] - 64 / 25) < 1e-6
    env = np.abs(sound)
    onset = np.argmax(env > 0.2) / sr
    assert abs(onset - 0.8) < 0.03  # AAC priming aside, the tone starts with the bright frames
    assert abs(sound.size / sr - 2.6) < 0.1


def test_recorder_holds_a_slideshow_session_whole(tmp_path: Path) -> None:
    """A machine far from real time: the idle picture, then two new pictures in 6 s (frames 75
    and 125), everything else repeats. The file is the whole 6 s at 25 fps with all its audio:
    the avatar at rest until the first picture, each picture held until the next, the last one
    to the end (not a 0.04 s file of one frame)."""
    out = tmp_path / "slides.mp4"
    rec = RecorderSink(RecorderConfig(path=out))
    rec.open(fps=25)
    sr = 16000
    audio = (0.3 * np.sin(2 * math.pi * 220 * np.arange(sr * 6) / sr)).astype(np.float32)
    idle = np.full((512, 512, 3), 60, np.uint8)
    shown = {75: np.full((512, 512, 3), 140, np.uint8), 125: np.full((512, 512, 3), 230, np.uint8)}
    last: LiveFrame | None = None
    for tick in range(150):
        s0 = tick * sr // 25
        rec.add_audio(s0, audio[s0 : s0 + sr // 25])
        if tick - 2 in shown:  # each picture arrives a little after its audio
            last = frame(tick - 2, shown[tick - 2])
            rec.send(last, False)
        elif last is None:
            rec.send(LiveFrame(index=-1, image=idle, timing=FrameTiming(capture=math.nan)), True)
        else:
            rec.send(last, True)
    rec.close(timeout=10)
    assert rec.error is None and out.exists()
    times, sound, frames, _ = decode(out)
    assert len(frames) == 150 and abs(times[-1] - 149 / 25) < 1e-6
    levels = np.array([f.mean() for f in frames])
    assert np.all(np.abs(levels[:75] - 60) < 3)
    assert np.all(np.abs(levels[75:125] - 140) < 3) and np.all(np.abs(levels[125:] - 230) < 3)
    assert abs(sound.size / sr - 6.0) < 0.1


def test_recorder_unwritable_folder_is_unavailable(tmp_path: Path) -> None:
    sinks = SinkSet([RecorderSink(RecorderConfig(path=tmp_path / "nope" / "x.mp4"))])
    sinks.open_all(fps=25)
    (status,) = sinks.statuses()
    assert not status.open and "does not exist" in (status.unavailable or "")


def test_live_recording_holds_the_audio_of_the_last_hop(tmp_path: Path) -> None:
    """A renderer that takes 0.6 s a frame (a slideshow): the audio captured while the last
    hop ran is in the recording too, up to the moment the session stopped (before, the file
    ended where the last hop had last read the microphone, up to a hop's compute early).
    In virtual time (support/virtual_clock.py): the renderer's 0.6 s are the clock's."""
    from runtime.engine.live.engine import FileInput, LiveControls, LiveEngine
    from tests.support.live import grey_avatar, stub_models
    from tests.support.slow_graphs import SlowGraph, slowed
    from tests.support.virtual_clock import VirtualClock

    clock = VirtualClock(real_timeout_s=120.0)
    models = stub_models(tmp_path / "stubs")
    renderer = SlowGraph(models["renderer"], "renderer", clock, per_unit_s=0.6)
    slow = slowed(models, {"renderer": renderer})
    out = tmp_path / "live.mp4"
    rec = RecorderSink(RecorderConfig(path=out))
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 16000 * 20).astype(np.float32)
    engine = LiveEngine(models=slow, source=FileInput(audio=audio), sinks=[rec], clock=clock)
    clock.join()
    # The recorder's thread only blocks on its queue: it must not hold virtual time.
    with clock.adopting(except_names=("recorder",)):
        engine.start(grey_avatar(models, 100), LiveControls())
    clock.sleep(4.0)
    status = engine.stats().audio
    assert status is not None
    heard = status.callbacks * 0.01  # 10 ms blocks delivered by the file's "sound card"
    clock.leave()
    assert engine.stop()
    assert rec.wait_finished(30) and rec.error is None
    _, sound, frames, _ = decode(out)
    assert heard > 2.0
    assert sound.size / 16000 >= heard - 0.1, (sound.size / 16000, heard)
    assert abs(len(frames) / 25 - sound.size / 16000) < 0.1  # the pictures hold to the end
