"""Property tests over hostile input files (issue 17): photo bytes, audio headers, track files,
and whole renders from damaged photos.

Every property: the only exception is the documented user-facing error type of the reader
(AvatarImageError, AudioFileError, TrackFileError; all ValueErrors with a one-line message
naming the file), whatever is returned is usable (finite, in range, the right shape), and a
failed render leaves nothing at OUT. Hypothesis runs derandomized with a fixed example budget,
so CI sees the same cases every time and the whole module stays well under a minute;
pytest-timeout bounds each test, so a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import io
import math
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runtime.core import validate as v
from runtime.engine.conditions_track import TrackFileError, read_track
from runtime.media.audio_file import AudioFileError, load_audio
from runtime.media.avatar_image import AvatarImageError, load_avatar_image
from tests.support.stub_graphs import write_stub_graphs

pytestmark = pytest.mark.timeout(120)


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def _portrait_bytes(fmt: str) -> bytes:
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


PHOTOS = {"png": _portrait_bytes("PNG"), "jpg": _portrait_bytes("JPEG")}


def _wav_bytes(seconds: float = 0.2, rate: int = 22050, channels: int = 2) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    pcm = (np.sin(2 * np.pi * 220 * t) * 12000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm, channels).tobytes())
    return buf.getvalue()


WAV = _wav_bytes()


@st.composite
def mutated(draw: st.DrawFn, base: bytes, *, head: int | None = None) -> bytes:
    """`base` with a few bytes changed (within the first `head` bytes when given), maybe cut."""
    data = bytearray(base)
    limit = min(len(data), head) if head else len(data)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, limit - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


# -- photos ------------------------------------------------------------------------------


@fuzz(120)
@given(kind=st.sampled_from(sorted(PHOTOS)), data=st.data())
def test_photo_bytes_load_or_fail_cleanly(tmp_path: Path, kind: str, data: st.DataObject) -> None:
    blob = data.draw(mutated(PHOTOS[kind]))
    path = tmp_path / f"photo.{kind}"
    path.write_bytes(blob)
    try:
        rgb = load_avatar_image(path)
    except AvatarImageError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@fuzz(40)
@given(at=st.integers(8, len(PHOTOS["png"]) - 1), flip=st.integers(1, 255))
def test_any_changed_png_byte_is_caught(tmp_path: Path, at: int, flip: int) -> None:
    """PNG carries a CRC on every chunk: a changed byte anywhere after the signature is
    reported as damage, never decoded into a different picture."""
    data = bytearray(PHOTOS["png"])
    data[at] ^= flip
    path = tmp_path / "p.png"
    path.write_bytes(bytes(data))
    with pytest.raises(AvatarImageError):
        load_avatar_image(path)


# -- audio -------------------------------------------------------------------------------


@fuzz(120)
@given(data=st.data())
def test_wav_headers_decode_or_fail_cleanly(tmp_path: Path, data: st.DataObject) -> None:
    blob = data.draw(mutated(WAV, head=64))
    path = tmp_path / "speech.wav"
    path.write_bytes(blob)
    try:
        samples = load_audio(path, max_seconds=30)
    except AudioFileError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert samples.dtype == np.float32 and samples.ndim == 1 and samples.size > 0
    assert np.isfinite(samples).all()


# -- track files -------------------------------------------------------------------------

_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.floats(-200, 200).map(lambda x: f"{x:.3f}"),
    st.sampled_from(["", "a", "1e30", "-1e999", "0x10", " 3 ", "nan", "1,5", '"2"', "\x85"]),
)
_COLUMNS = ["pitch", "yaw", "roll", "gaze_x", "gaze_y", "cam_scale", "cam_tx", "cam_ty", "x"]


def _assert_usable(track: object) -> None:
    for name, rng, scale in (
        ("pose", v.TRACK_POSE_DEG, 180 / math.pi),
        ("gaze", v.TRACK_GAZE, 1.0),
        ("cam", v.TRACK_CAM, 1.0),
    ):
        array = getattr(track, name)
        if array is not None:
            assert array.dtype == np.float32 and array.ndim == 2 and array.shape[0] > 0
            assert np.isfinite(array).all()
            assert (np.abs(array * scale) <= rng.hi * (1 + 1e-5)).all()


@fuzz(150)
@given(
    columns=st.lists(st.sampled_from(_COLUMNS), min_size=0, max_size=6),
    rows=st.lists(st.lists(_CELLS, min_size=0, max_size=7), min_size=0, max_size=6),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
)
def test_csv_tracks_parse_or_fail_cleanly(
    tmp_path: Path, columns: list[str], rows: list[list[str]], encoding: str
) -> None:
    text = "\n".join([",".join(columns), *(",".join(r) for r in rows)]) + "\n"
    path = tmp_path / "track.csv"
    path.write_bytes(text.encode(encoding, errors="replace"))
    try:
        track = read_track(path)
    except TrackFileError as exc:
        assert "\n" not in str(exc) and "track.csv" in str(exc)
        return
    _assert_usable(track)


_ARRAYS = st.one_of(
    st.builds(
        lambda rows, cols, fill: np.full((rows, cols), fill, np.float64),
        st.integers(0, 4),
        st.integers(0, 4),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    st.builds(lambda n: np.arange(n, dtype=np.int16).reshape(-1, 1), st.integers(0, 5)),
    st.just(np.array(["a", "b"])),
    st.just(np.zeros((2, 3), np.complex64)),
    st.just(np.array([{"x": 1}], dtype=object)),
)


@fuzz(100)
@given(
    arrays=st.dictionaries(st.sampled_from(["pose", "gaze", "cam", "other"]), _ARRAYS),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_npz_tracks_load_or_fail_cleanly(
    tmp_path: Path, arrays: dict[str, np.ndarray], cut: int | None
) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    path = tmp_path / "track.npz"
    path.write_bytes(blob if cut is None else blob[:cut])
    try:
        track = read_track(path)
    except TrackFileError as exc:
        assert "\n" not in str(exc) and "track.npz" in str(exc)
        return
    _assert_usable(track)


# -- whole renders -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def render_inputs(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-render")
    write_stub_graphs(folder / "graphs")
    with wave.open(str(fixtures_dir / "audio_1.wav")) as w:
        params = w.getparams()
        frames = w.readframes(int(w.getframerate() * 0.4))
    with wave.open(str(folder / "s.wav"), "wb") as o:
        o.setparams(params)
        o.writeframes(frames)
    (folder / "me.png").write_bytes((fixtures_dir / "source_4.png").read_bytes())
    return folder


@fuzz(8)
@given(data=st.data())
def test_render_from_a_damaged_photo_leaves_nothing_at_out(
    tmp_path: Path, render_inputs: Path, data: st.DataObject
) -> None:
    from runtime.commands import cli

    photo = render_inputs / "me.png"
    blob = data.draw(mutated(photo.read_bytes(), head=4096))
    folder = tmp_path / f"run{data.draw(st.integers(0, 10**9))}"
    folder.mkdir()
    damaged = folder / "photo.png"
    damaged.write_bytes(blob)
    out = folder / "out.mp4"
    code = cli.main(
        [
            "render",
            "--avatar", str(damaged),
            "--audio", str(render_inputs / "s.wav"),
            "--out", str(out),
            "--graphs", str(render_inputs / "graphs"),
            "--no-crop",
        ]
    )  # fmt: skip
    assert code in (0, 1)
    if code == 1:
        assert not out.exists()
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".out.mp4")]
    assert not leftovers
    assert damaged.read_bytes() == blob
