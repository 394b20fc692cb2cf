"""Hostile and unlucky use of `render` and `live` (issue 17): no input destroyed, no value
unchecked, no traceback, no hang, nothing left at OUT.

Most probes run the real CLI in a subprocess, as a user meets it, against stub graphs (the
model's I/O contract with trivial math), so a whole render costs about a second.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.stub_graphs import write_stub_graphs
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stub_graphs(tmp_path_factory.mktemp("stub") / "graphs")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    """One second of the real fixture speech (a short render)."""
    return _wav(fixtures_dir / "audio_1.wav", tmp_path_factory.mktemp("a") / "s.wav", 1.0)


@pytest.fixture
def work(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A folder with a copy of a portrait, so inputs are ours to check byte for byte."""
    (tmp_path / "me.png").write_bytes((fixtures_dir / "source_4.png").read_bytes())
    return tmp_path


def _wav(src: Path, dst: Path, seconds: float) -> Path:
    with wave.open(str(src)) as w:
        params = w.getparams()
        data = w.readframes(w.getnframes())
    need = int(params.framerate * seconds) * params.sampwidth * params.nchannels
    with wave.open(str(dst), "wb") as o:
        o.setparams(params)
        o.writeframes((data * (need // len(data) + 1))[:need])
    return dst


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMTALKER_DATA_DIR": str(tmp / "data"),
        "IMTALKER_CACHE_DIR": str(tmp / "cache"),
        **extra,
    }


def cli(
    tmp: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(tmp, **env),
    )


def inproc(caplog: pytest.LogCaptureFixture, *args: str) -> subprocess.CompletedProcess[str]:
    """The same CLI in this process (faster for many probes); its log lines as stderr."""
    from runtime.commands import cli as entry

    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = entry.main(list(args))
    text = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records)
    return subprocess.CompletedProcess(list(args), code, "", text)


def refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, one clear line naming the problem, no traceback."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle.lower() in done.stderr.lower(), done.stderr


def no_output(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def render_args(work: Path, audio: Path, out: Path, *extra: str) -> tuple[str, ...]:
    """`render` of the portrait in `work` speaking `audio`, to `out`."""
    avatar = str(work / "me.png")
    return ("render", "--avatar", avatar, "--audio", str(audio), "--out", str(out), *extra)


def live_args(work: Path, audio: Path, *extra: str) -> tuple[str, ...]:
    """`live` of the portrait in `work` speaking the file `audio`."""
    return ("live", "--avatar", str(work / "me.png"), "--audio-file", str(audio), *extra)


@pytest.fixture
def snapshot(work: Path) -> Iterator[None]:
    """Every input file in `work` is byte-identical after the test."""
    before = {p: p.read_bytes() for p in work.iterdir() if p.is_file() and not p.is_symlink()}
    yield
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path.name} was changed"


# -- 1. data loss ------------------------------------------------------------------------


def _talk_mp4(path: Path, seconds: float = 0.4) -> Path:
    from runtime.media.video_file import Mp4Writer

    audio = np.sin(np.arange(int(16000 * seconds)) / 8.0).astype(np.float32) * 0.3
    with Mp4Writer(path, width=256, height=256, fps=25, audio=audio) as w:
        for i in range(int(25 * seconds)):
            w.write(np.full((256, 256, 3), 40 + i, np.uint8))
    return path


@pytest.mark.usefixtures("snapshot")
def test_render_never_writes_over_its_driving_video(work: Path, graphs: Path) -> None:
    talk = _talk_mp4(work / "talk.mp4")
    (work / "sub").mkdir()
    (work / "link.mp4").symlink_to(talk)
    os.link(talk, work / "hard.mp4")
    avatar = str(work / "me.png")
    for out in (talk, work / "sub" / ".." / "talk.mp4", work / "link.mp4", work / "hard.mp4"):
        done = cli(
            work, "render", "--avatar", avatar, "--driving", str(talk), "--out", str(out),
            "--graphs", str(graphs), "--overwrite",
        )  # fmt: skip
        refused(done, "same file as --driving")


@pytest.mark.usefixtures("snapshot")
def test_render_never_writes_over_its_audio_or_photo(work: Path, graphs: Path) -> None:
    talk = _talk_mp4(work / "speech.mp4")
    done = cli(work, *render_args(work, talk, talk, "--graphs", str(graphs), "--overwrite"))
    refused(done, "same file as --audio")
    (work / "photo.mp4").symlink_to(work / "me.png")
    photo = work / "photo.mp4"
    done = cli(work, *render_args(work, talk, photo, "--graphs", str(graphs), "--overwrite"))
    refused(done, "same file as --avatar")


def test_existing_output_needs_overwrite(work: Path, graphs: Path, speech: Path) -> None:
    out = work / "out.mp4"
    out.write_bytes(b"someone's holiday video")
    args = render_args(work, speech, out)
    done = cli(work, *args, "--graphs", str(graphs))
    refused(done, "already exists", "--overwrite")
    assert out.read_bytes() == b"someone's holiday video"
    done = cli(work, *args, "--graphs", str(graphs), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[4:8] == b"ftyp"


def test_live_record_never_writes_over_its_audio_file(work: Path, graphs: Path) -> None:
    talk = _talk_mp4(work / "talk.mp4")
    before = talk.read_bytes()
    done = cli(
        work,
        *live_args(work, talk, "--no-vcam", "--record", str(talk), "--overwrite"),
        *("--graphs", str(graphs)),
    )
    refused(done, "same file as --audio-file")
    assert talk.read_bytes() == before


# -- 4. unchecked values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--cfg", "nan", "--cfg must be a finite number in 1..5"),
        ("--cfg", "inf", "finite"),
        ("--cfg", "-5", "--cfg -5 is out of range: allowed 1..5"),
        ("--gaze-x", "nan", "--gaze-x must be a finite number in -1..1"),
        ("--yaw", "1e9", "allowed -30..30 degrees"),
        ("--pitch", "-21", "allowed -20..20 degrees"),
        ("--seed", "-2", "--seed -2 is out of range"),
        ("--nfe", "1000000", "--nfe 1000000 is out of range: allowed 2..50"),
        ("--batch", "1000000", "--batch 1000000 is out of range: allowed 1..64"),
        ("--crf", "99", "allowed 0..51"),
    ],
)
def test_render_refuses_bad_numbers(
    caplog: pytest.LogCaptureFixture,
    work: Path,
    graphs: Path,
    speech: Path,
    option: str,
    value: str,
    needle: str,
) -> None:
    out = work / "out.mp4"
    done = inproc(
        caplog, *render_args(work, speech, out, "--graphs", str(graphs), f"{option}={value}")
    )
    refused(done, needle)
    no_output(out)


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--cfg", "nan", "finite"),
        ("--roll", "inf", "finite"),
        ("--nfe", "1000000", "allowed 2..50"),
        ("--hop", "0", "allowed 1..50"),
        ("--allow-fewer-steps", "1", "allowed 2..50"),
        ("--allow-fewer-steps", "11", "is more than --nfe 10"),
        ("--seed", "-2", "allowed -1..4294967295"),
        ("--vcam-size", "99999x720", "64..4096"),
        ("--duration", "nan", "finite"),
    ],
)
def test_live_refuses_bad_numbers(
    caplog: pytest.LogCaptureFixture,
    work: Path,
    graphs: Path,
    speech: Path,
    option: str,
    value: str,
    needle: str,
) -> None:
    done = inproc(caplog, *live_args(work, speech, "--graphs", str(graphs), f"{option}={value}"))
    refused(done, option, needle)


def test_live_fewer_steps_is_refused_with_quality(
    caplog: pytest.LogCaptureFixture, work: Path, graphs: Path, speech: Path
) -> None:
    args = live_args(work, speech, "--graphs", str(graphs), "--quality", "--allow-fewer-steps")
    refused(inproc(caplog, *args), "--allow-fewer-steps does nothing with --quality")


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("nan.csv", "pitch,yaw,roll\n0,0,0\n0,nan,0\n", "frame 2 of `pose`"),
        ("huge.csv", "pitch,yaw,roll\n1e30,0,0\n", "allowed: finite values in -90..90 degrees"),
        ("word.csv", "gaze_x,gaze_y\n0.1,a\n", "row 2, column gaze_y: 'a' is not a number"),
        ("blank.csv", "gaze_x,gaze_y\n0.1\n", "row 2, column gaze_y: an empty cell"),
    ],
)
def test_render_refuses_bad_track_rows(
    caplog: pytest.LogCaptureFixture,
    work: Path,
    graphs: Path,
    speech: Path,
    name: str,
    content: str,
    needle: str,
) -> None:
    track = work / name
    track.write_text(content)
    out = work / "out.mp4"
    done = inproc(
        caplog, *render_args(work, speech, out, "--graphs", str(graphs), "--track", str(track))
    )
    refused(done, name, needle)
    no_output(out)


def test_bad_number_through_the_real_entry_point(work: Path, graphs: Path, speech: Path) -> None:
    """What the user sees in a terminal: one line, exit 1, nothing at OUT."""
    out = work / "out.mp4"
    done = cli(work, *render_args(work, speech, out, "--graphs", str(graphs), "--cfg", "nan"))
    refused(done, "--cfg must be a finite number in 1..5")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    no_output(out)


# -- 5. unbounded work -------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
@pytest.mark.parametrize("option", ["--driving", "--audio", "--avatar"])
def test_fifo_inputs_are_refused_not_waited_on(
    work: Path, graphs: Path, speech: Path, option: str
) -> None:
    fifo = work / "pipe.mp4"
    os.mkfifo(fifo)
    args = {"--avatar": str(work / "me.png"), "--audio": str(speech)}
    if option == "--driving":
        args.pop("--audio")
    args[option] = str(fifo)
    flat = [x for kv in args.items() for x in kv]
    out = work / "out.mp4"
    # The timeout only bounds the test: reading the FIFO would block forever.
    done = cli(work, "render", *flat, "--out", str(out), "--graphs", str(graphs), timeout=60)
    refused(done, "named pipe (FIFO)", option)
    no_output(out)


def test_batch_needing_more_memory_than_available_is_refused_before_allocating() -> None:
    from runtime.commands.render import RENDERER_BYTES_PER_FRAME, check_render_memory
    from runtime.core.validate import ValidationError

    cpu = ["CPUExecutionProvider"]
    check_render_memory(4, cpu, available=5 * RENDERER_BYTES_PER_FRAME)
    with pytest.raises(ValidationError, match=r"--batch 64 needs about 22\.4 GiB"):
        check_render_memory(64, cpu, available=8 * 2**30)
    check_render_memory(64, ["CUDAExecutionProvider", *cpu], available=8 * 2**30)


# -- 6. sentences, not tracebacks --------------------------------------------------------


def test_data_and_cache_folder_pointing_at_a_file(work: Path, speech: Path) -> None:
    blocker = work / "not-a-folder"
    blocker.write_text("x")
    out = work / "out.mp4"
    base = render_args(work, speech, out)
    done = cli(work, *base, IMTALKER_DATA_DIR=str(blocker))
    refused(done, "IMTALKER_DATA_DIR", "is a file, not a folder")
    done = cli(work, *base, IMTALKER_CACHE_DIR=str(blocker / "sub"))
    refused(done, "IMTALKER_CACHE_DIR", "is a file, not a folder")
    no_output(out)
    done = cli(work, "models", "status", IMTALKER_DATA_DIR=str(blocker))
    refused(done, "IMTALKER_DATA_DIR", "is a file, not a folder")
    done = cli(work, *live_args(work, speech, "--no-vcam"), IMTALKER_DATA_DIR=str(blocker))
    refused(done, "IMTALKER_DATA_DIR", "is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes regardless of permissions")
def test_unreadable_photo_and_audio(work: Path, speech: Path) -> None:
    locked = work / "locked.png"
    locked.write_bytes((work / "me.png").read_bytes())
    locked.chmod(0)
    out = work / "out.mp4"
    done = cli(work, "render", "--avatar", str(locked), "--audio", str(speech), "--out", str(out))
    refused(done, "locked.png", "permission denied")
    no_output(out)


def test_graphs_folder_missing(work: Path, speech: Path) -> None:
    out = work / "out.mp4"
    done = cli(work, *render_args(work, speech, out, "--graphs", str(work / "no-such-graphs")))
    refused(done, "--graphs", "does not exist")


def test_npz_tracks_truncated_or_pickled(work: Path, graphs: Path, speech: Path) -> None:
    good = work / "good.npz"
    np.savez(good, pose=np.zeros((25, 3), np.float32))
    cut = work / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-40])
    pickled = work / "obj.npz"
    np.savez(pickled, pose=np.array([{"a": 1}], dtype=object))
    nan = work / "nan.npz"
    np.savez(nan, gaze=np.full((25, 2), np.nan, np.float32))
    out = work / "out.mp4"
    for track, needle in (
        (cut, "damaged or truncated"),
        (pickled, "pickled data), which are never loaded"),
        (nan, "frame 1 of `gaze`"),
    ):
        done = cli(
            work, *render_args(work, speech, out, "--graphs", str(graphs), "--track", str(track))
        )
        refused(done, track.name, needle)
        no_output(out)


def test_non_utf8_csv_names_the_byte(work: Path, graphs: Path, speech: Path) -> None:
    track = work / "latin.csv"
    track.write_bytes(b"pitch,yaw,roll\n0,0,0\n\x850,0,0\n")
    out = work / "out.mp4"
    done = cli(
        work, *render_args(work, speech, out, "--graphs", str(graphs), "--track", str(track))
    )
    refused(done, "latin.csv", "not UTF-8 text (byte 0x85")


def _flip_png_data_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 4 + 100] ^= 0x01  # inside the first IDAT chunk's data
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("crop", [True, False])
def test_png_with_bad_chunk_checksum_is_damaged_not_faceless(
    work: Path, graphs: Path, speech: Path, crop: bool
) -> None:
    bad = _flip_png_data_byte(work / "me.png", work / "flipped.png")
    out = work / "out.mp4"
    done = cli(
        work, "render", "--avatar", str(bad), "--audio", str(speech), "--out", str(out),
        "--graphs", str(graphs), *(() if crop else ("--no-crop",)),
    )  # fmt: skip
    refused(done, "flipped.png is damaged", "'IDAT' chunk")
    assert "no face" not in done.stderr
    no_output(out)


def test_file_size_limit_while_writing(work: Path, graphs: Path, speech: Path) -> None:
    """RLIMIT_FSIZE makes writes fail with EFBIG (Python ignores SIGXFSZ)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))

    out = work / "out.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli",
         *render_args(work, speech, out, "--graphs", str(graphs))],
        capture_output=True, text=True, timeout=120, env=_env(work), preexec_fn=limit,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "largest size allowed" in done.stderr or "file-size limit" in done.stderr, done.stderr
    no_output(out)


# -- 7. signals --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_mid_render_cleans_up(
    work: Path, graphs: Path, fixtures_dir: Path, sig: signal.Signals
) -> None:
    long_speech = _wav(fixtures_dir / "audio_1.wav", work / "long.wav", 120.0)
    out = work / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.commands.cli",
         *render_args(work, long_speech, out, "--graphs", str(graphs))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(work),
    )  # fmt: skip
    try:
        # Wait (bounded) until the temporary file exists: the render is writing frames.

        def writing() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            return any(p.name.startswith(".out.mp4") for p in work.iterdir())

        wait_until(writing, 90.0, poll_s=0.02, what="the render started writing")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err, err
    assert f"stopped by {sig.name}" in err, err
    no_output(out)


# -- 9. live --record into a missing folder ----------------------------------------------


def test_live_record_into_missing_folder_is_refused(work: Path, graphs: Path, speech: Path) -> None:
    out = work / "no" / "such" / "rec.mp4"
    done = cli(
        work, *live_args(work, speech, "--no-vcam", "--record", str(out), "--graphs", str(graphs))
    )
    refused(done, "--record folder", "does not exist")


def test_live_existing_recording_needs_overwrite(work: Path, graphs: Path, speech: Path) -> None:
    out = work / "rec.mp4"
    out.write_bytes(b"yesterday's call")
    done = cli(
        work, *live_args(work, speech, "--no-vcam", "--record", str(out), "--graphs", str(graphs))
    )
    refused(done, "already exists", "--overwrite")
    assert out.read_bytes() == b"yesterday's call"


def test_live_record_to_a_file_another_session_records_to_is_refused_at_start(
    work: Path, graphs: Path, speech: Path
) -> None:
    """Issue 25, 8: both used to exit 0, the second saying it failed in a log line only."""
    from runtime.sinks.recording_journal import claim

    out = work / "rec.mp4"
    session, _ = claim(out, journal=work / "journal")  # the first session, recording
    try:
        done = cli(
            work,
            *live_args(work, speech, "--no-vcam", "--record", str(out), "--graphs", str(graphs)),
        )
    finally:
        session.finish(remove_part=True)
    refused(done, "another session is already recording to", str(out))
    assert not out.exists()
