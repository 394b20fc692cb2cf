"""The wire protocol between a live client and a render server (any thread; dependency-free:
the standard library and `runtime.core.validate` only, so both ends and the tests share it).

One WebSocket per session. Text messages are JSON objects with a `kind`; binary messages start
with `MAGIC` and a kind byte, then a fixed little-endian header and a payload:

client -> server
- `hello` (text, first, within `HELLO_TIMEOUT_S`): token, protocol version, fps, lookahead,
  seed, frame format, and the 25 fps frame index the first audio sample belongs to;
- `avatar` (text) announcing `bytes`, then one AVATAR binary message with the encoded photo
  (PNG/JPEG; the size is checked from the announcement before the photo is received);
- `controls` (text): pose, gaze, cfg, nfe, hop (`controls_to_wire` / `controls_from_wire`);
- AUDIO (binary): sequence number, the capture time of its last sample (the client's clock),
  sample rate (16 kHz only) and exactly `PACKET_SAMPLES` (20 ms) of int16 PCM;
- CROP (binary, webcam mode): sequence number, output frame index, capture time, then the
  face crop the motion encoder takes (JPEG, the server's source size), not the camera picture;
- `frame_format` (text, `--frame-format auto`): switch the frames to `format` (jpeg, h264,
  raw) from the next hop on; an H.264 stream starts anew with a keyframe;
- `end` (text): a finite input is over; `ping` (text) with the client's send time.

server -> client
- `ready` (text): session id, the server's model version and source size, the replica's pid;
- FRAME (binary): output frame index, the capture time of the audio it answers (the client's
  clock, echoed), the server's compute time for its hop, size and format, the hop's frame
  count and whether it is the hop's first frame (so the client counts each hop's compute
  once), then the pixels: JPEG, H.264 (one stream per session, one packet per frame: a tenth
  of JPEG's bytes for slow links) or raw RGB (lossless, for loopback); index -1 is the idle
  picture (never part of the H.264 stream). No separate per-hop message: every message
  crosses the serving proxy.
- `ended`, `pong`, and `error` (code + one-sentence message; the server then closes, with the
  same sentence as the close reason, cut to `CLOSE_REASON_BYTES`).

Every number is finite and in range: JSON's `NaN`/`Infinity`, a float literal past the double
range (`1e999`) and integer literals of more than 18 digits are refused while parsing; what a
refusal quotes of the value it refuses is cut (`shown`). Timeouts and rates per connection are
the server's (`runtime.server.limits`).
"""

from __future__ import annotations

import hmac
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Final

from runtime.core import validate as V

PROTOCOL_VERSION: Final = 1
MAGIC: Final = b"IMTK"
SAMPLE_RATE: Final = 16_000
PACKET_MS: Final = 20
PACKET_SAMPLES: Final = SAMPLE_RATE * PACKET_MS // 1000  # 320

MAX_MESSAGE_BYTES: Final = 12 * 1024 * 1024
"""Any one message; the transport is configured with it too."""
MAX_TEXT_BYTES: Final = 16 * 1024
MAX_PHOTO_BYTES: Final = 10 * 1024 * 1024
MAX_PHOTO_PIXELS: Final = 4096 * 4096
MAX_FRAME_SIDE: Final = 4096
HELLO_TIMEOUT_S: Final = 5.0
"""A connection without a valid `hello` by then is closed (it never holds a session's place)."""
IDLE_TIMEOUT_S: Final = 30.0
"""A session with no message for this long is closed (the client pings every second)."""
MAX_START_FRAME: Final = 2**30
"""A hello's `start_frame` (over 400 days at 30 fps): frame indices stay in the header's
32 bits for the whole session."""
CLOSE_REASON_BYTES: Final = 123
"""What a WebSocket close frame holds of a reason (UTF-8)."""
TOKEN_MIN_CHARS: Final = 16

# Binary kinds
AUDIO: Final = 1
AVATAR: Final = 2
FRAME: Final = 3
CROP: Final = 4

FORMAT_RAW: Final = 0
FORMAT_JPEG: Final = 1
FORMAT_H264: Final = 2
FRAME_FORMATS: Final = {"raw": FORMAT_RAW, "jpeg": FORMAT_JPEG, "h264": FORMAT_H264}

_PREFIX = struct.Struct("<4sB")
_AUDIO = struct.Struct("<IdIH")  # seq, capture end (s), rate, samples
_CROP = struct.Struct("<Iid")  # seq, output index, capture (s)
_FRAME = struct.Struct("<idfHHBBB")  # index, capture, hop compute, w, h, format, hop frames, first

# Error codes the server answers with (then it closes the session).
BAD_TOKEN: Final = "bad_token"
SERVER_FULL: Final = "server_full"
TOO_LARGE: Final = "too_large"
BAD_AUDIO: Final = "bad_audio"
BAD_PHOTO: Final = "bad_photo"
MALFORMED: Final = "malformed"
TOO_FAST: Final = "too_fast"
IDLE: Final = "idle"
GOING_AWAY: Final = "going_away"
INTERNAL: Final = "internal"

CLOSE_GOING_AWAY: Final = 1001  # WebSocket close codes
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_TRY_LATER: Final = 1013
CLOSE_ERROR: Final = 1011


class ProtocolError(ValueError):
    """Bad input from the other end; `code` is one of the error codes, `str()` one sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def close_code(self) -> int:
        return {
            BAD_TOKEN: CLOSE_POLICY,
            SERVER_FULL: CLOSE_TRY_LATER,
            TOO_LARGE: CLOSE_TOO_BIG,
            INTERNAL: CLOSE_ERROR,
            GOING_AWAY: CLOSE_GOING_AWAY,
        }.get(self.code, CLOSE_POLICY)

    @property
    def close_reason(self) -> str:
        """The message as a close frame's reason: whole characters within its 123 bytes."""
        return close_reason(str(self))


def close_reason(message: str) -> str:
    data = message.encode("utf-8")
    if len(data) <= CLOSE_REASON_BYTES:
        return message
    return data[: CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


def shown(value: object, limit: int = 40) -> str:
    """`repr(value)` cut to `limit` characters: a refusal quotes what it refuses, never a
    whole message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- token -----------------------------------------------------------------------------------


def token_matches(given: object, expected: str) -> bool:
    """Constant-time token comparison (a wrong type is simply wrong)."""
    if not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


# -- text messages ---------------------------------------------------------------------------


def text(kind: str, **fields: Any) -> str:
    return json.dumps({"kind": kind, **fields}, allow_nan=False)


def error_text(exc: ProtocolError) -> str:
    return text("error", code=exc.code, message=str(exc))


def parse_text(data: str) -> dict[str, Any]:
    """A JSON object with a string `kind`, or `ProtocolError`."""
    if len(data.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ProtocolError(TOO_LARGE, f"a text message is over {MAX_TEXT_BYTES} bytes")
    try:
        message = json.loads(
            data, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except _OutOfRange as exc:
        raise ProtocolError(
            MALFORMED, f"a text message holds a number out of range ({exc})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(MALFORMED, f"a text message is not JSON ({exc})") from None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise ProtocolError(MALFORMED, "a text message must be a JSON object with a 'kind'")
    return message


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


class _OutOfRange(ValueError):
    pass


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > 18:  # past 1e18 no field means anything
        raise _OutOfRange(shown(literal, 24))
    return int(literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999 reads as infinity
        raise _OutOfRange(shown(literal, 24))
    return value


def parse_ping(message: dict[str, Any]) -> float | None:
    """A `ping`'s send time (echoed in the `pong`): a finite number, or absent."""
    t = message.get("t")
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise ProtocolError(MALFORMED, f"a ping's time must be a finite number, not {shown(t)}")
    if abs(t) > 1e15:
        raise ProtocolError(MALFORMED, "a ping's time is out of range")
    return float(t)


@dataclass(frozen=True, kw_only=True)
class Hello:
    token: str
    fps: int = 25
    lookahead: int = 2
    seed: int | None = 25
    frame_format: str = "jpeg"
    start_frame: int = 0
    """The 25 fps frame index (client timeline) of the first audio sample sent."""

    def to_text(self) -> str:
        return text(
            "hello",
            version=PROTOCOL_VERSION,
            token=self.token,
            fps=self.fps,
            lookahead=self.lookahead,
            seed=self.seed,
            frame_format=self.frame_format,
            start_frame=self.start_frame,
        )


def parse_hello(message: dict[str, Any], expected_token: str) -> Hello:
    """Check a `hello` (the token first, in constant time)."""
    if message.get("kind") != "hello":
        raise ProtocolError(MALFORMED, "the first message must be 'hello'")
    if not token_matches(message.get("token"), expected_token):
        raise ProtocolError(BAD_TOKEN, "wrong or missing token")
    if message.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(
            MALFORMED,
            f"protocol version {shown(message.get('version'))} is not supported "
            f"(this server speaks {PROTOCOL_VERSION})",
        )
    fps = message.get("fps", 25)
    if fps not in (25, 30):
        raise ProtocolError(MALFORMED, f"fps must be 25 or 30, not {shown(fps)}")
    frame_format = message.get("frame_format", "jpeg")
    if frame_format not in FRAME_FORMATS:
        raise ProtocolError(MALFORMED, f"frame_format must be one of {sorted(FRAME_FORMATS)}")
    seed = message.get("seed")
    try:
        lookahead = int(V.LOOKAHEAD.check(_number(message.get("lookahead", 2), "lookahead")))
        if seed is not None:
            seed = int(V.SEED.check(_number(seed, "seed")))
            seed = None if seed < 0 else seed
        start = _number(message.get("start_frame", 0), "start_frame")
    except V.ValidationError as exc:
        raise ProtocolError(MALFORMED, str(exc)) from None
    if not float(start).is_integer() or not 0 <= start <= MAX_START_FRAME:
        raise ProtocolError(
            MALFORMED, f"start_frame must be a whole frame index from 0 to {MAX_START_FRAME}"
        )
    return Hello(
        token="",
        fps=int(fps),
        lookahead=lookahead,
        seed=seed,
        frame_format=str(frame_format),
        start_frame=int(start),
    )


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise V.ValidationError(f"{name} must be a number, not {shown(value)}", subject=name)
    return float(value)


# -- controls --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WireControls:
    """Live controls as plain values (None = natural / the model's default / Auto)."""

    pose: tuple[float, float, float] | None = None  # yaw, pitch, roll degrees
    gaze: tuple[float, float] | None = None
    cfg: float | None = None
    nfe: int = 10
    hop: int | None = None

    def to_text(self) -> str:
        return text(
            "controls",
            pose=None if self.pose is None else list(self.pose),
            gaze=None if self.gaze is None else list(self.gaze),
            cfg=self.cfg,
            nfe=self.nfe,
            hop=self.hop,
        )


def parse_controls(message: dict[str, Any]) -> WireControls:
    """Every value checked against the shared ranges (`runtime.core.validate`)."""
    try:
        pose = _vector(message.get("pose"), (V.YAW, V.PITCH, V.ROLL), "pose")
        gaze = _vector(message.get("gaze"), (V.GAZE_X, V.GAZE_Y), "gaze")
        cfg = message.get("cfg")
        cfg = None if cfg is None else V.CFG.check(_number(cfg, "cfg"))
        nfe = int(V.NFE.check(_number(message.get("nfe", 10), "nfe")))
        hop = message.get("hop")
        hop = None if hop is None else int(V.HOP.check(_number(hop, "hop")))
    except V.ValidationError as exc:
        raise ProtocolError(MALFORMED, f"controls: {exc}") from None
    return WireControls(
        pose=None if pose is None else (pose[0], pose[1], pose[2]),
        gaze=None if gaze is None else (gaze[0], gaze[1]),
        cfg=cfg,
        nfe=nfe,
        hop=hop,
    )


def frame_format_text(fmt: str) -> str:
    return text("frame_format", format=fmt)


def parse_frame_format(message: dict[str, Any]) -> str:
    """The format a `frame_format` message asks for, or `ProtocolError`."""
    fmt = message.get("format")
    if not isinstance(fmt, str) or fmt not in FRAME_FORMATS:
        raise ProtocolError(
            MALFORMED, f"frame_format must be one of {sorted(FRAME_FORMATS)}, not {shown(fmt)}"
        )
    return fmt


def _vector(value: object, ranges: tuple[V.Range, ...], name: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != len(ranges):
        raise V.ValidationError(f"{name} must be a list of {len(ranges)} numbers", subject=name)
    return [r.check(_number(v, r.name)) for r, v in zip(ranges, value, strict=True)]


def parse_avatar_header(message: dict[str, Any]) -> tuple[str, int]:
    """(name, bytes) of an `avatar` announcement; refuses a photo over `MAX_PHOTO_BYTES`."""
    size = message.get("bytes")
    name = message.get("name", "avatar")
    if not isinstance(name, str) or len(name) > 200:
        raise ProtocolError(MALFORMED, "avatar name must be a string of at most 200 characters")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ProtocolError(MALFORMED, "avatar 'bytes' must be a positive integer")
    if size > MAX_PHOTO_BYTES:
        raise ProtocolError(
            TOO_LARGE,
            f"the photo is {size / 2**20:.1f} MB; at most {MAX_PHOTO_BYTES // 2**20} MB is "
            "accepted (send the face crop, not the original picture)",
        )
    return name, size


# -- binary messages -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AudioPacket:
    seq: int
    capture_end: float
    """When the last sample was captured (the client's clock, seconds)."""
    pcm: bytes  # int16 little-endian mono, PACKET_SAMPLES samples
    rate: int = SAMPLE_RATE


@dataclass(frozen=True, kw_only=True)
class FrameHeader:
    index: int
    capture: float
    compute_s: float
    width: int
    height: int
    format: int
    hop_frames: int = 1
    first_in_hop: bool = True


def binary_kind(data: bytes) -> int:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(TOO_LARGE, f"a message is over {MAX_MESSAGE_BYTES} bytes")
    if len(data) < _PREFIX.size:
        raise ProtocolError(MALFORMED, "a binary message is shorter than its header")
    magic, kind = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(MALFORMED, "a binary message does not start with the protocol's mark")
    return int(kind)


def pack_audio(packet: AudioPacket) -> bytes:
    samples = len(packet.pcm) // 2
    head = _PREFIX.pack(MAGIC, AUDIO) + _AUDIO.pack(
        packet.seq, packet.capture_end, packet.rate, samples
    )
    return head + packet.pcm


def unpack_audio(data: bytes) -> AudioPacket:
    """An AUDIO message, or `ProtocolError` (16 kHz, 20 ms, finite timestamp only)."""
    if binary_kind(data) != AUDIO:
        raise ProtocolError(MALFORMED, "expected an audio packet")
    if len(data) < _PREFIX.size + _AUDIO.size:
        raise ProtocolError(MALFORMED, "an audio packet is shorter than its header")
    seq, capture_end, rate, samples = _AUDIO.unpack_from(data, _PREFIX.size)
    if rate != SAMPLE_RATE:
        raise ProtocolError(
            BAD_AUDIO, f"audio must be {SAMPLE_RATE} Hz mono PCM; this packet says {rate} Hz"
        )
    pcm = data[_PREFIX.size + _AUDIO.size :]
    if samples != PACKET_SAMPLES or len(pcm) != 2 * PACKET_SAMPLES:
        raise ProtocolError(
            BAD_AUDIO,
            f"an audio packet must hold {PACKET_SAMPLES} samples ({PACKET_MS} ms), "
            f"not {samples} ({len(pcm)} bytes)",
        )
    if not math.isfinite(capture_end):
        raise ProtocolError(BAD_AUDIO, "an audio packet's capture time is not a finite number")
    return AudioPacket(seq=seq, capture_end=capture_end, pcm=bytes(pcm), rate=rate)


def pack_avatar(photo: bytes) -> bytes:
    return _PREFIX.pack(MAGIC, AVATAR) + photo


def unpack_avatar(data: bytes, expected_bytes: int) -> bytes:
    if binary_kind(data) != AVATAR:
        raise ProtocolError(MALFORMED, "expected the avatar photo announced")
    photo = data[_PREFIX.size :]
    if len(photo) != expected_bytes:
        raise ProtocolError(
            MALFORMED, f"the photo has {len(photo)} bytes, {expected_bytes} were announced"
        )
    return photo


def pack_frame(header: FrameHeader, payload: bytes) -> bytes:
    head = _PREFIX.pack(MAGIC, FRAME) + _FRAME.pack(
        header.index,
        header.capture,
        header.compute_s,
        header.width,
        header.height,
        header.format,
        min(max(header.hop_frames, 0), 255),
        int(header.first_in_hop),
    )
    return head + payload


def unpack_frame(data: bytes) -> tuple[FrameHeader, bytes]:
    if binary_kind(data) != FRAME:
        raise ProtocolError(MALFORMED, "expected a frame")
    if len(data) < _PREFIX.size + _FRAME.size:
        raise ProtocolError(MALFORMED, "a frame is shorter than its header")
    index, capture, compute_s, w, h, fmt, hop_frames, first = _FRAME.unpack_from(data, _PREFIX.size)
    payload = data[_PREFIX.size + _FRAME.size :]
    if not (0 < w <= MAX_FRAME_SIDE and 0 < h <= MAX_FRAME_SIDE):
        raise ProtocolError(
            MALFORMED, f"a frame of {w}x{h} pixels (at most {MAX_FRAME_SIDE} a side)"
        )
    if index < -1 or not math.isfinite(compute_s) or compute_s < 0:
        raise ProtocolError(MALFORMED, "a frame with an unusable index or compute time")
    if fmt == FORMAT_RAW and len(payload) != w * h * 3:
        raise ProtocolError(MALFORMED, "a raw frame's size does not match its header")
    if fmt not in (FORMAT_RAW, FORMAT_JPEG, FORMAT_H264):
        raise ProtocolError(MALFORMED, f"unknown frame format {fmt}")
    header = FrameHeader(
        index=index,
        capture=capture,
        compute_s=compute_s,
        width=w,
        height=h,
        format=fmt,
        hop_frames=hop_frames,
        first_in_hop=bool(first),
    )
    return header, bytes(payload)


@dataclass(frozen=True, kw_only=True)
class CropPacket:
    seq: int
    index: int  # the output frame this crop makes
    capture: float  # when the camera frame was captured (the client's clock)
    jpeg: bytes


def pack_crop(packet: CropPacket) -> bytes:
    head = _PREFIX.pack(MAGIC, CROP) + _CROP.pack(packet.seq, packet.index, packet.capture)
    return head + packet.jpeg


def unpack_crop(data: bytes) -> CropPacket:
    if binary_kind(data) != CROP:
        raise ProtocolError(MALFORMED, "expected a face crop")
    if len(data) < _PREFIX.size + _CROP.size:
        raise ProtocolError(MALFORMED, "a face crop is shorter than its header")
    seq, index, capture = _CROP.unpack_from(data, _PREFIX.size)
    jpeg = data[_PREFIX.size + _CROP.size :]
    if not math.isfinite(capture) or index < 0:
        raise ProtocolError(MALFORMED, "a face crop's capture time or index is not usable")
    if len(jpeg) > MAX_PHOTO_BYTES:
        raise ProtocolError(TOO_LARGE, f"a face crop is over {MAX_PHOTO_BYTES // 2**20} MB")
    return CropPacket(seq=seq, index=index, capture=capture, jpeg=bytes(jpeg))
