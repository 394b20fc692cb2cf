"""Pixels and samples to and from the wire (whichever thread sends or receives: the client's
link threads, the server's compute thread).

Photos are decoded from memory only (a session's avatar is never written to disk), with the
format and pixel count checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import struct
import warnings
from fractions import Fraction
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from runtime.remote.protocol import (
    BAD_PHOTO,
    FORMAT_H264,
    FORMAT_JPEG,
    FORMAT_RAW,
    MAX_PHOTO_PIXELS,
    TOO_LARGE,
    FrameHeader,
    ProtocolError,
)

Image8 = npt.NDArray[np.uint8]
Array = npt.NDArray[np.float32]

JPEG_QUALITY = 90
PHOTO_FORMATS = ("PNG", "JPEG")


def pcm_from_float(samples: Array) -> bytes:
    """Float samples (full scale 1.0) -> int16 PCM; 16-bit audio (k / 32768) round-trips
    exactly through `float_from_pcm`."""
    scaled = np.round(np.asarray(samples, np.float32) * np.float32(32768.0))
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def float_from_pcm(pcm: bytes) -> Array:
    out: Array = np.frombuffer(pcm, "<i2").astype(np.float32) / np.float32(32768.0)
    return out


def encode_frame(image: Image8, fmt: int) -> bytes:
    """(H, W, 3) RGB uint8 -> payload in `fmt`."""
    if fmt == FORMAT_RAW:
        return np.ascontiguousarray(image, np.uint8).tobytes()
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf.tobytes())


def decode_frame(header: FrameHeader, payload: bytes) -> Image8:
    """Payload -> (H, W, 3) RGB uint8, or `ProtocolError` when it does not decode to the size
    its header says."""
    if header.format == FORMAT_RAW:
        raw: Image8 = np.frombuffer(payload, np.uint8).reshape(header.height, header.width, 3)
        return raw
    if header.format != FORMAT_JPEG:
        raise ProtocolError(BAD_PHOTO, f"unknown frame format {header.format}")
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (header.height, header.width):
        raise ProtocolError(BAD_PHOTO, "a frame does not decode to the size its header says")
    rgb: Image8 = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
    return rgb


class FrameEncoder:
    """Frames of one session in its format (the server's compute thread, one call at a
    time): JPEG and raw frame by frame; H.264 as one low-latency stream (x264 ultrafast,
    zerolatency: one packet out per frame in, no B-frames)."""

    def __init__(self, fmt: int, *, crf: int = 23) -> None:
        self.format = fmt
        self._crf = crf
        self._h264: Any = None
        self._pts = 0

    def encode(self, image: Image8) -> bytes:
        if self.format != FORMAT_H264:
            return encode_frame(image, self.format)
        import av

        h, w = image.shape[:2]
        ctx = self._h264
        if ctx is None or (ctx.width, ctx.height) != (w, h):
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
            ctx.time_base = Fraction(1, 25)
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": str(self._crf)}
            self._h264 = ctx
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self._pts
        self._pts += 1
        return b"".join(bytes(p) for p in ctx.encode(frame))


class FrameDecoder:
    """Frames from the server (the client's link thread; one per connection: an H.264
    stream starts anew with each session, and with each switch to H.264 within one)."""

    def __init__(self) -> None:
        self._h264: Any = None

    def decode(self, header: FrameHeader, payload: bytes) -> Image8 | None:
        """The picture, or None while the H.264 decoder has none yet."""
        if header.format != FORMAT_H264:
            if header.index >= 0:  # the server left H.264: a later switch back is a new stream
                self._h264 = None
            return decode_frame(header, payload)
        import av

        if self._h264 is None:
            self._h264 = av.CodecContext.create("h264", "r")
            self._h264.thread_type = "SLICE"  # frame threading would hold frames back
        try:
            frames = self._h264.decode(av.Packet(payload))
        except av.error.FFmpegError as exc:
            raise ProtocolError(BAD_PHOTO, f"an H.264 frame does not decode ({exc})") from None
        if not frames:
            return None
        rgb: Image8 = frames[-1].to_ndarray(format="rgb24")
        if rgb.shape[:2] != (header.height, header.width):
            raise ProtocolError(BAD_PHOTO, "an H.264 frame does not have its header's size")
        return rgb


def encode_crop(image: Image8) -> bytes:
    """A webcam face crop as JPEG (sent every camera frame: small beats lossless here)."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf.tobytes())


def encode_photo(image: Image8) -> bytes:
    """An avatar crop as PNG (lossless: the server encodes exactly the pixels the client has)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())


def decode_photo(data: bytes, *, size: int) -> Image8:
    """A PNG/JPEG avatar crop from memory -> (size, size, 3) RGB uint8 (resized when its side
    differs; it must be square). Refuses other formats, pictures over `MAX_PHOTO_PIXELS`,
    and truncated data."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt, (w, h) = img.format, img.size
            if fmt not in PHOTO_FORMATS:
                raise ProtocolError(
                    BAD_PHOTO, f"the photo is {fmt or 'not an image'}; send PNG or JPEG"
                )
            if w * h > MAX_PHOTO_PIXELS:
                raise ProtocolError(
                    TOO_LARGE,
                    f"the photo has {w}x{h} pixels; at most {MAX_PHOTO_PIXELS} are accepted",
                )
            if w != h:
                raise ProtocolError(BAD_PHOTO, f"the avatar crop must be square, not {w}x{h}")
            img.load()
            rgb = np.asarray(img.convert("RGB"), np.uint8)
    except ProtocolError:
        raise
    except Image.DecompressionBombError:
        # PIL refuses far past its own limit before we see the size: say it in ours.
        w, h = _png_size(data) or (0, 0)
        shown = f"{w}x{h} pixels" if w else f"over {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels"
        raise ProtocolError(
            TOO_LARGE, f"the photo has {shown}; at most {MAX_PHOTO_PIXELS} are accepted"
        ) from None
    except UnidentifiedImageError:
        raise ProtocolError(BAD_PHOTO, "the photo is not an image; send PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError, Warning) as exc:
        raise ProtocolError(BAD_PHOTO, f"the photo does not decode ({exc})") from None
    if rgb.shape[0] != size:
        rgb = np.asarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA), np.uint8)
    return np.ascontiguousarray(rgb)


def _png_size(data: bytes) -> tuple[int, int] | None:
    """A PNG's size from its header (IHDR), None for anything else."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)
