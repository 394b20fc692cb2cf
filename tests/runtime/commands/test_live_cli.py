"""`imtalker-cam live` headless: a file through the live path, stats, recording, reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import av
import pytest

from runtime.commands import cli
from runtime.commands.live import controls_from_args
from runtime.commands.live_args import check_fewer_steps
from runtime.engine.live.engine import DEFAULT_MIN_NFE
from tests.support.stub_graphs import write_stub_graphs


def short_wav(src: Path, dst: Path, seconds: float) -> Path:
    with wave.open(str(src)) as w:
        data = w.readframes(int(w.getframerate() * seconds))
        params = w.getparams()
    with wave.open(str(dst), "wb") as o:
        o.setparams(params)
        o.writeframes(data)
    return dst


HANG_S = 500.0
"""Real-time bound on a `live` run: only a hang takes this long (a loaded machine stretches the
session's real time; what the tests check does not depend on it)."""


def live(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli", "live", *args],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )


def test_audio_file_with_stats_and_recording(tmp_path: Path, fixtures_dir: Path) -> None:
    """The command end to end in its own process, judged on what does not depend on how fast
    the machine is: it fails if no frames come out, if the stats lack their fields, or if the
    recording is not at 30 fps, lacks the file's speech, or has its video and audio of
    different lengths (frames are placed by index, so that holds however late they were).
    The 30 fps rate itself is checked on the virtual clock (test_pacer.py's thirty-fps test;
    the stats' line a second in test_defaults_are_auto_and_live_without_repeats_or_drops)."""
    seconds = 2.0
    graphs = write_stub_graphs(tmp_path / "graphs")
    audio = short_wav(fixtures_dir / "audio_1.wav", tmp_path / "a.wav", seconds)
    out = tmp_path / "rec.mp4"
    done = live(
        "--avatar",
        str(fixtures_dir / "source_1.png"),
        "--audio-file",
        str(audio),
        "--graphs",
        str(graphs),
        "--stats-json",
        "--record",
        str(out),
        "--fps",
        "30",
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    lines = [x for x in lines if x["phase"] != "loading"]
    assert lines  # a line a second while live: at least one for a 2 s file
    last = lines[-1]
    assert last["state"] == "running"
    lat = last["latency"]
    assert lat["frames_published"] > 0 and lat["frames_unique"] > 0 and lat["output_fps"] > 0
    assert lat["latency_p50_ms"] > 0
    assert last["audio"]["native_rate"] == 16000
    vcam = next(s for s in last["sinks"] if s["name"] == "virtual camera")
    assert not vcam["open"] and "backend" in vcam["unavailable"]  # pyvirtualcam's own reason
    assert "virtual camera unavailable" in done.stderr
    with av.open(str(out)) as c:
        assert c.streams.video[0].base_rate == 30  # (frames the pacer dropped leave gaps)
        assert c.streams.audio and c.streams.audio[0].rate == 16000
        frames = sum(1 for _ in c.decode(video=0))
        c.seek(0)
        audio_s = sum(f.samples for f in c.decode(audio=0)) / 16000
    # The whole file's speech is in it (the recording starts with the first audio; after the
    # file, silence until the session stopped), and the video lasts as long as the audio.
    assert audio_s >= seconds - 1 / 30, audio_s
    assert abs(frames / 30 - audio_s) < 2 / 30, (frames, audio_s)
    assert f"recorded {out}: {frames} frames" in done.stderr  # all the recorder wrote


def test_human_stats_line_and_duration(tmp_path: Path, fixtures_dir: Path) -> None:
    graphs = write_stub_graphs(tmp_path / "graphs")
    audio = short_wav(fixtures_dir / "audio_1.wav", tmp_path / "a.wav", 5.0)
    done = live(
        "--avatar",
        str(fixtures_dir / "source_1.png"),
        "--audio-file",
        str(audio),
        "--graphs",
        str(graphs),
        "--no-vcam",
        "--stats",
        "--duration",
        "2.2",
        "--yaw",
        "15",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # What it is doing from the first second: loading, encoding, then a line a second that
    # starts with the session's state, a dash for what is not measured yet, never "nan".
    assert lines[:2] == ["loading the model...", "encoding the avatar..."]
    lines = lines[2:]
    assert len(lines) == 2 and all(" | fps " in line for line in lines)
    assert all(line.startswith(("starting: ", "live: ")) for line in lines), lines
    assert not any("nan" in line for line in lines)
    line = lines[-1]
    assert "latency newest" in line and "p50" in line and "rtf" in line and "hop " in line
    assert "new " in line and "skipped " in line and "overflows 0" in line


def test_bad_inputs_fail_fast_with_a_reason(tmp_path: Path, fixtures_dir: Path) -> None:
    done = live("--avatar", str(tmp_path / "nope.png"), "--no-vcam", "--graphs", str(tmp_path))
    assert done.returncode == 1 and "nope.png" in done.stderr
    done = live(
        "--avatar", str(fixtures_dir / "source_1.png"), "--graphs", str(tmp_path), "--nfe", "1"
    )
    assert done.returncode == 1 and "--nfe" in done.stderr
    done = live(
        "--avatar",
        str(fixtures_dir / "source_1.png"),
        "--graphs",
        str(tmp_path),
        "--background",
        "purple",
    )
    assert done.returncode == 1 and "--background must be a colour like #202020 or 'blur'" in (
        done.stderr
    )


def test_controls_from_flags() -> None:
    args = cli.build_parser().parse_args(
        ["live", "--avatar", "x.png", "--yaw", "20", "--gaze-y", "0.1", "--cfg", "2", "--hop", "3"]
    )
    c = controls_from_args(args)
    assert c.pose is not None and c.pose.yaw == 20 and c.pose.pitch == 0
    assert c.gaze is not None and c.gaze.y == 0.1 and c.gaze.x == 0
    assert c.cam is None and c.cfg_scale == 2 and c.hop == 3
    natural = controls_from_args(cli.build_parser().parse_args(["live", "--avatar", "x.png"]))
    assert natural.pose is None and natural.gaze is None
    assert natural.nfe == 10 and natural.min_nfe is None  # fewer steps only when asked


@pytest.mark.parametrize(
    ("flags", "min_nfe"),
    [
        (["--allow-fewer-steps"], DEFAULT_MIN_NFE),
        (["--allow-fewer-steps", "3"], 3),
        (["--allow-fewer-steps=6", "--stats"], 6),
        (["--allow-fewer-steps", "--nfe", "4"], DEFAULT_MIN_NFE),  # above --nfe: allows nothing
    ],
)
def test_allow_fewer_steps_flag(flags: list[str], min_nfe: int) -> None:
    args = cli.build_parser().parse_args(["live", "--avatar", "x.png", *flags])
    check_fewer_steps(args)  # valid: no error
    assert controls_from_args(args).min_nfe == min_nfe


def test_sources_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(
            ["live", "--avatar", "x.png", "--webcam", "0", "--audio-file", "f.wav"]
        )


def test_defaults_are_auto_and_live_without_repeats_or_drops(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12's acceptance through the command itself, in virtual time: with stub graphs
    (negligible compute) and default settings (Auto), `live --audio-file ... --no-vcam
    --stats-json` reports latency p95 <= 200 ms, `unique_fps` and `skipped_hops`, and after the
    first second no frame is repeated or dropped until the file has played."""
    from runtime.commands import live as live_cmd
    from tests.support.virtual_clock import VirtualClock

    graphs = write_stub_graphs(tmp_path / "graphs")
    args = cli.build_parser().parse_args(
        [
            "live",
            "--avatar",
            str(fixtures_dir / "source_1.png"),
            "--audio-file",
            str(fixtures_dir / "audio_1.wav"),
            "--graphs",
            str(graphs),
            "--no-vcam",
            "--stats-json",
        ]
    )
    assert args.hop is None  # Auto is the default
    clock = VirtualClock(real_timeout_s=120.0)
    clock.join()
    with clock.adopting():
        code = live_cmd.run(args, clock=clock)
    clock.leave()
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    loading = [x["status"] for x in lines if x["phase"] == "loading"]
    assert loading == ["loading the model", "encoding the avatar"]
    lines = [x for x in lines if x["phase"] != "loading"]
    assert all(x["phase"] in ("starting", "live") for x in lines)
    assert lines[-1]["phase"] == "live" and lines[-1]["status"].startswith("live: hop 1")
    assert len(lines) >= 10  # 10 s of speech, a line a second
    first, playing, last = lines[0], lines[-3], lines[-1]
    assert last["hop"] == 1 and last["auto_hop"] and last["real_time"]
    assert last["nfe"] == 10  # the steps in use: the default, never lowered unasked
    assert last["latency"]["latency_p95_ms"] <= 200
    assert last["skipped_hops"] == 0
    assert abs(last["output_fps"] - 25) < 0.1
    assert abs(last["unique_fps"] - last["output_fps"]) < 0.1
    for name in ("repeated", "dropped", "late"):
        got = playing["latency"]["counters"].get(name, 0)
        assert got == first["latency"]["counters"].get(name, 0), (name, first, playing)
