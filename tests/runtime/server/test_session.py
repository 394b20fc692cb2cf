"""The render server's session core, in-process with stub graphs: the wire protocol's checks,
`ServerSession` (the engine's hop machinery on uploaded audio) and one connection end to end
through an in-memory channel (no Ray)."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from runtime.engine.live.avatar import to_uint8
from runtime.model.execution.sessions import ModelSet
from runtime.remote import protocol as P
from runtime.remote.client import RemoteConfig
from runtime.remote.codec import (
    FrameDecoder,
    decode_frame,
    decode_photo,
    encode_crop,
    encode_photo,
    pcm_from_float,
)
from runtime.server.connection import Admission, ServerContext, handle
from runtime.server.session import ServerSession
from tests.support import stub_graphs
from tests.support.live import stub_models
from tests.support.remote import TOKEN, MemoryChannel, audio_packets, speechlike
from tests.support.stub_graphs import RAMP


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return stub_models(tmp_path_factory.mktemp("stubs"))


def grey_photo(models: ModelSet, level: int) -> bytes:
    size = models.source_size
    return encode_photo(np.full((size, size, 3), level, np.uint8))


# -- protocol --------------------------------------------------------------------------------


def test_audio_packet_round_trip_and_refusals() -> None:
    pcm = pcm_from_float(np.linspace(-1, 1, P.PACKET_SAMPLES, dtype=np.float32))
    data = P.pack_audio(P.AudioPacket(seq=7, capture_end=12.5, pcm=pcm))
    got = P.unpack_audio(data)
    assert (got.seq, got.capture_end, got.pcm) == (7, 12.5, pcm)

    wrong_rate = P.pack_audio(P.AudioPacket(seq=1, capture_end=1.0, pcm=pcm, rate=48000))
    with pytest.raises(P.ProtocolError, match="16000 Hz") as exc:
        P.unpack_audio(wrong_rate)
    assert exc.value.code == P.BAD_AUDIO
    with pytest.raises(P.ProtocolError, match="320 samples"):
        P.unpack_audio(P.pack_audio(P.AudioPacket(seq=1, capture_end=1.0, pcm=pcm[:100])))
    with pytest.raises(P.ProtocolError, match="finite"):
        P.unpack_audio(P.pack_audio(P.AudioPacket(seq=1, capture_end=math.nan, pcm=pcm)))
    with pytest.raises(P.ProtocolError, match="protocol's mark"):
        P.unpack_audio(b"JUNK" + data[4:])
    with pytest.raises(P.ProtocolError, match="shorter"):
        P.unpack_audio(data[:3])
    with pytest.raises(P.ProtocolError, match="over") as big:
        P.binary_kind(P.MAGIC + bytes(P.MAX_MESSAGE_BYTES))
    assert big.value.code == P.TOO_LARGE


def test_hello_token_and_values_are_checked() -> None:
    good = json.loads(P.Hello(token=TOKEN, fps=30, lookahead=1, start_frame=5).to_text())
    hello = P.parse_hello(good, TOKEN)
    assert (hello.fps, hello.lookahead, hello.start_frame) == (30, 1, 5)
    for token in ("wrong", "", None, 12, TOKEN + "x"):
        with pytest.raises(P.ProtocolError, match="token") as exc:
            P.parse_hello({**good, "token": token}, TOKEN)
        assert exc.value.code == P.BAD_TOKEN
    for key, value in (("fps", 24), ("lookahead", 99), ("frame_format", "gif"), ("version", 9)):
        with pytest.raises(P.ProtocolError) as exc:
            P.parse_hello({**good, key: value}, TOKEN)
        assert exc.value.code == P.MALFORMED
    with pytest.raises(P.ProtocolError, match="not JSON"):
        P.parse_text('{"kind": "hello", "fps": NaN}')


def test_controls_are_checked_against_the_shared_ranges() -> None:
    wire = P.WireControls(pose=(10.0, -5.0, 2.0), gaze=(0.2, -0.1), cfg=2.5, nfe=5, hop=3)
    assert P.parse_controls(json.loads(wire.to_text())) == wire
    for bad in ({"pose": [100, 0, 0]}, {"gaze": [0.1]}, {"cfg": "x"}, {"nfe": 1}, {"hop": 0}):
        with pytest.raises(P.ProtocolError, match="controls"):
            P.parse_controls({"kind": "controls", **bad})


def test_photo_limits() -> None:
    with pytest.raises(P.ProtocolError, match=r"50\.0 MB") as exc:
        P.parse_avatar_header({"kind": "avatar", "bytes": 50 * 2**20})
    assert exc.value.code == P.TOO_LARGE
    with pytest.raises(P.ProtocolError, match="square"):
        decode_photo(encode_photo(np.zeros((64, 80, 3), np.uint8)), size=256)
    with pytest.raises(P.ProtocolError, match="does not decode"):
        decode_photo(encode_photo(np.zeros((64, 64, 3), np.uint8))[:60], size=64)
    with pytest.raises(P.ProtocolError, match="not an image"):
        decode_photo(b"hello world" * 10, size=64)
    assert decode_photo(encode_photo(np.full((64, 64, 3), 9, np.uint8)), size=32).shape == (
        32,
        32,
        3,
    )


# -- the session core ------------------------------------------------------------------------


def run_session(models: ModelSet, level: int, audio: np.ndarray, *, t0: float = 100.0) -> list:
    session = ServerSession(models=models, hello=P.Hello(token="", start_frame=10))
    idle = session.set_avatar(grey_photo(models, level), f"grey{level}")
    assert idle.shape == (512, 512, 3)
    frames = []
    for data in audio_packets(audio, t0=t0):
        session.add_audio(P.unpack_audio(data))
        while (out := session.step()) is not None:
            frames.extend(out.frames)
    session.finish()
    while (out := session.step()) is not None:
        frames.extend(out.frames)
    assert session.done
    return frames


def test_session_makes_every_frame_with_the_clients_timestamps(models: ModelSet) -> None:
    audio = speechlike(2.0)
    frames = run_session(models, 100, audio, t0=100.0)
    # 2 s at 25 fps, indices on the client's timeline (start_frame 10).
    assert [f.index for f in frames] == list(range(10, 60))
    captures = np.array([f.timing.capture for f in frames])
    expected = 100.0 + (np.arange(50) + 1) * 0.04
    np.testing.assert_allclose(captures, expected, atol=1e-6)


def test_two_sessions_keep_their_own_avatar(models: ModelSet) -> None:
    audio = speechlike(1.0)
    dark = run_session(models, 40, audio)
    light = run_session(models, 200, audio)
    assert len(dark) == len(light) == 25
    # Same audio, same motion: the difference is the avatar's id value (level / 255).
    for a, b in zip(dark, light, strict=True):
        assert int(b.image[0, 0, 0]) > int(a.image[0, 0, 0])
    # The ramp is the stub renderer's; the frames are the renderer's own, uint8.
    assert dark[0].image.dtype == np.uint8
    assert dark[0].image[0, -1, 1] - dark[0].image[0, 0, 1] == pytest.approx(RAMP * 255, abs=2)


def test_session_refuses_out_of_order_audio(models: ModelSet) -> None:
    session = ServerSession(models=models, hello=P.Hello(token=""))
    packets = audio_packets(speechlike(0.1))
    session.add_audio(P.unpack_audio(packets[1]))
    with pytest.raises(P.ProtocolError, match="out of order"):
        session.add_audio(P.unpack_audio(packets[0]))


def test_idle_picture_is_the_avatar_at_rest(models: ModelSet) -> None:
    session = ServerSession(models=models, hello=P.Hello(token=""))
    idle = session.set_avatar(grey_photo(models, 128), "grey")
    avatar = session.avatar
    assert avatar is not None
    expected = to_uint8(
        session._renderer.run({**avatar.tensors, "motion": avatar.source_motion[None]})["frames"]
    )[0]
    np.testing.assert_array_equal(idle, expected)


# -- one connection, in memory ---------------------------------------------------------------


async def _exchange(
    ctx: ServerContext, messages: list[str | bytes], *, until: str = "ended"
) -> list[str | bytes]:
    channel = MemoryChannel()
    for m in messages:
        channel.inbox.put_nowait(m)
    server = asyncio.create_task(handle(channel, ctx))
    got: list[str | bytes] = []
    while True:
        item = await asyncio.wait_for(channel.outbox.get(), 10)
        got.append(item)
        if isinstance(item, str) and json.loads(item)["kind"] in (until, "error"):
            break
    channel.inbox.put_nowait(None)
    await asyncio.wait_for(server, 10)
    return got


def _hello(**kw: object) -> str:
    return P.Hello(token=TOKEN, frame_format="raw", **kw).to_text()  # type: ignore[arg-type]


def _avatar_messages(models: ModelSet, level: int) -> list[str | bytes]:
    photo = grey_photo(models, level)
    return [P.text("avatar", name="me", bytes=len(photo)), P.pack_avatar(photo)]


def test_connection_serves_a_session_end_to_end(models: ModelSet) -> None:
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=1))
    audio = speechlike(1.0)
    messages = [
        _hello(),
        *_avatar_messages(models, 90),
        P.WireControls(hop=5).to_text(),
        *audio_packets(audio),
        P.text("ping", t=1.5),
        P.text("end"),
    ]
    got = asyncio.run(_exchange(ctx, messages))
    texts = [json.loads(m) for m in got if isinstance(m, str)]
    assert texts[0]["kind"] == "ready" and texts[0]["source_size"] == models.source_size
    assert {"kind": "pong", "t": 1.5} in texts
    frames = [P.unpack_frame(m) for m in got if isinstance(m, bytes)]
    firsts = [h for h, _ in frames[1:] if h.first_in_hop]
    # The whole second came at once, then "end": five hops of backlog. Like the local engine
    # (one hop scheduler), the server makes one last hop of the newest frames (the hop and the
    # two lookahead frames, which need no later audio now) and skips the older ones instead of
    # working through old audio, at the end of the input as anywhere else.
    assert len(firsts) == 1 and all(h.hop_frames == 7 and h.compute_s > 0 for h in firsts)
    assert frames[0][0].index == -1  # the idle picture first
    indices = [h.index for h, _ in frames[1:]]
    assert indices == list(range(18, 25))
    image = decode_frame(*frames[1])
    assert image.shape == (512, 512, 3)
    assert ctx.admission.active == 0


@pytest.mark.parametrize(
    ("messages", "code", "match"),
    [
        (lambda m: [P.Hello(token="nope").to_text()], P.BAD_TOKEN, "token"),
        (lambda m: [b"IMTK\x01"], P.MALFORMED, "hello"),
        (lambda m: [_hello(), P.text("avatar", bytes=50 * 2**20)], P.TOO_LARGE, "50.0 MB"),
        (
            lambda m: [
                _hello(),
                P.pack_audio(P.AudioPacket(seq=0, capture_end=1.0, pcm=bytes(640), rate=44100)),
            ],
            P.BAD_AUDIO,
            "16000 Hz",
        ),
        (lambda m: [_hello(), b"garbage bytes here"], P.MALFORMED, "mark"),
        (lambda m: [_hello(), "{not json"], P.MALFORMED, "JSON"),
        (lambda m: [_hello(), P.text("teleport")], P.MALFORMED, "teleport"),
        (
            lambda m: [_hello(), P.text("avatar", bytes=10), P.pack_avatar(b"0123456789")],
            P.BAD_PHOTO,
            "not an image",
        ),
    ],
)
def test_bad_input_gets_one_clear_error_then_close(
    models: ModelSet, messages: object, code: str, match: str
) -> None:
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=1))
    got = asyncio.run(_exchange(ctx, messages(models)))  # type: ignore[operator]
    error = json.loads(got[-1])  # type: ignore[arg-type]
    assert error["kind"] == "error" and error["code"] == code
    assert match in error["message"]
    assert ctx.admission.active == 0


def test_a_session_beyond_capacity_is_told_server_full(models: ModelSet) -> None:
    admission = Admission(capacity=1)
    admission.try_enter()  # another session holds the only place
    ctx = ServerContext(models=models, token=TOKEN, admission=admission)
    got = asyncio.run(_exchange(ctx, [_hello()]))
    error = json.loads(got[-1])  # type: ignore[arg-type]
    assert error["code"] == P.SERVER_FULL and "server full" in error["message"]
    assert admission.active == 1  # the other session keeps its place


def test_webcam_crops_become_pictures_of_the_newest_crop(models: ModelSet) -> None:
    """Webcam mode: each face crop (not the camera picture) is motion-encoded and rendered
    against the session's avatar; the picture carries the crop's index and capture time, and
    a crop that was overtaken before its turn is dropped."""
    session = ServerSession(models=models, hello=P.Hello(token=""))
    session.set_avatar(grey_photo(models, 100), "grey")
    avatar = session.avatar
    assert avatar is not None
    id_value = float(avatar.tensors["id_latent"][0, 0])
    size = models.source_size

    def crop(seq: int, level: int) -> P.CropPacket:
        jpeg = encode_crop(np.full((size, size, 3), level, np.uint8))
        return P.unpack_crop(
            P.pack_crop(P.CropPacket(seq=seq, index=10 + seq, capture=50.0 + seq, jpeg=jpeg))
        )

    session.add_crop(crop(0, 60))
    out = session.step()
    assert out is not None and [f.index for f in out.frames] == [10]
    (frame,) = out.frames
    assert frame.timing.capture == 50.0
    # The stub motion encoder reads the crop's mean RGB into motion[0:3]; the renderer shows it.
    motion = stub_graphs.motion_from_level(frame.image[0, 0, 0] / 255.0, id_value)
    assert abs(motion - 60 / 255.0) < 0.02
    session.add_crop(crop(1, 200))
    session.add_crop(crop(2, 120))  # overtakes 1 before the compute thread got to it
    out = session.step()
    assert out is not None and [f.index for f in out.frames] == [12]
    assert session.crops_dropped == 1
    assert session.step() is None
    with pytest.raises(P.ProtocolError, match="out of order"):
        session.add_crop(crop(1, 10))


def test_h264_frames_are_one_stream_and_the_idle_picture_stays_out(models: ModelSet) -> None:
    ctx = ServerContext(models=models, token=TOKEN, admission=Admission(capacity=1))
    messages = [
        P.Hello(token=TOKEN, frame_format="h264").to_text(),
        *_avatar_messages(models, 90),
        # One hop for the whole second: all 25 frames in one stream (with smaller hops the
        # server would make only the newest of a backlog that arrives all at once).
        P.WireControls(hop=25).to_text(),
        *audio_packets(speechlike(1.0)),
        P.text("end"),
    ]
    got = asyncio.run(_exchange(ctx, messages))
    frames = [P.unpack_frame(m) for m in got if isinstance(m, bytes)]
    assert frames[0][0].index == -1 and frames[0][0].format == P.FORMAT_JPEG
    decoder = FrameDecoder()
    images = [decoder.decode(h, payload) for h, payload in frames[1:]]
    assert all(h.format == P.FORMAT_H264 for h, _ in frames[1:])
    assert [h.index for h, _ in frames[1:]] == list(range(25))
    assert all(image is not None and image.shape == (512, 512, 3) for image in images)
    # The same pictures as JPEG would show, within coding noise, at a fraction of the bytes.
    jpeg = asyncio.run(_exchange(ctx, [P.Hello(token=TOKEN).to_text(), *messages[1:]]))
    jpeg_frames = [P.unpack_frame(m) for m in jpeg if isinstance(m, bytes)][1:]
    for (h, payload), image in zip(jpeg_frames, images, strict=True):
        want = decode_frame(h, payload).astype(int)
        assert np.abs(want - image.astype(int)).mean() < 3.0  # type: ignore[union-attr]
    h264_bytes = sum(len(p) for _, p in frames[1:])
    jpeg_bytes = sum(len(p) for _, p in jpeg_frames)
    assert h264_bytes * 3 < jpeg_bytes, (h264_bytes, jpeg_bytes)


@pytest.mark.parametrize(
    ("url", "wire"),
    [
        ("ws://127.0.0.1:8765", "jpeg"),
        ("ws://localhost:8765", "jpeg"),
        ("ws://192.168.1.20:8765", "jpeg"),
        ("wss://gpu.example.com", "h264"),
        ("wss://8.8.8.8", "h264"),
    ],
)
def test_auto_frame_format_follows_the_address(url: str, wire: str) -> None:
    assert RemoteConfig(url=url, token=TOKEN).wire_format == wire
    assert RemoteConfig(url=url, token=TOKEN, frame_format="raw").wire_format == "raw"
