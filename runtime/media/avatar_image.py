"""Load a user's photo safely as an RGB avatar image (runs on whichever thread calls it).

Any caller thread is fine (the CLI's main thread, a GUI worker): the module keeps no state.

Safety rules, in the order they are applied:
- the file must exist and be a regular file;
- the format is detected from the content (never the extension) and must be one of
  :data:`SUPPORTED_FORMATS`; other formats are named in the error (a ``.jpg`` that is really a
  GIF is reported as GIF);
- the pixel count is checked from the header before any pixel is decoded, against
  :data:`MAX_PIXELS` (40 MP, far below Pillow's decompression-bomb threshold), so a tiny file
  claiming 100000x100000 pixels is rejected without allocating anything;
- truncated or corrupt data is an error, never a half-grey picture.

Then the picture is made model-ready: EXIF orientation applied, transparency composited over a
neutral grey (a black background would read as a dark halo around cut-out portraits), every
mode (16-bit, grayscale, palette, CMYK, bilevel) converted to uint8 RGB.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from runtime.core.validate import ValidationError, check_input_file

logger = logging.getLogger(__name__)

#: Pillow format names we decode. Everything else is refused before its decoder runs.
SUPPORTED_FORMATS: Final = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
_FORMAT_LABELS: Final = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}

#: Largest accepted picture, in pixels (width * height). 40 MP covers every phone camera while
#: keeping the decoded RGBA copy under ~160 MB.
MAX_PIXELS: Final = 40_000_000

#: Smallest accepted side: below this there is no face worth animating.
MIN_SIDE: Final = 32

#: Colour that transparent areas become. Mid-light grey: neutral for the model, and unlike
#: black it does not leave a dark fringe around anti-aliased cut-out edges.
BACKGROUND_RGB: Final = (192, 192, 192)

# Pillow's own bomb guard runs inside Image.open, before our header check, and only for
# pictures far over our limit (its default warns at ~89 MP and refuses at twice that); ours
# handles everything between with a precise message. Re-arm it if something disabled it.
if Image.MAX_IMAGE_PIXELS is None:
    Image.MAX_IMAGE_PIXELS = 2 * MAX_PIXELS

# Magic numbers of formats people commonly try, so the error can name them.
_KNOWN_SIGNATURES: Final = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
)
_HEIF_BRANDS: Final = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


class AvatarImageError(ValueError):
    """The photo cannot be used as an avatar; the message says why, in user terms."""


def load_avatar_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = MAX_PIXELS,
    background: tuple[int, int, int] = BACKGROUND_RGB,
) -> npt.NDArray[np.uint8]:
    """Decode ``path`` into an upright uint8 RGB array of shape (H, W, 3).

    Raises :class:`AvatarImageError` for a missing file, a file that is not an image or is in an
    unsupported format, a picture over ``max_pixels`` or under :data:`MIN_SIDE`, and for
    truncated or corrupt data. Pillow's own guard (``Image.MAX_IMAGE_PIXELS``, ~89 MP by
    default) still applies, so a ``max_pixels`` above it has no effect past it.
    """
    file = Path(path)
    _check_file(file)
    try:
        # Bomb warnings become errors so that they reach the handler below instead of the log.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file, formats=SUPPORTED_FORMATS) as img:
                _check_header(file, img, max_pixels=max_pixels)
                if img.format == "PNG":
                    _check_png_checksums(file)
                img.load()
                upright = _apply_exif_orientation(img)
                return _to_rgb_array(upright, background=background, name=file.name)
    except AvatarImageError:
        raise
    except UnidentifiedImageError:
        raise AvatarImageError(_unsupported_message(file)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise AvatarImageError(
            f"{file.name} is too large: it claims far more pixels than the limit of "
            f"{_megapixels(max_pixels)} MP; scale the photo down and try again ({exc})"
        ) from None
    except MemoryError:
        raise AvatarImageError(
            f"{file.name} could not be decoded: not enough memory for this picture"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        # Pillow reports truncation and broken streams as OSError; some plugins leak the others.
        raise AvatarImageError(
            f"{file.name} is damaged or truncated and cannot be decoded ({exc})"
        ) from None


def _check_file(file: Path) -> None:
    if not file.exists():
        raise AvatarImageError(f"avatar image not found: {file}")
    if file.is_dir():
        raise AvatarImageError(f"{file} is a folder, not an image file")
    try:
        check_input_file(file, label="avatar image")
    except ValidationError as exc:
        raise AvatarImageError(str(exc)) from None
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise AvatarImageError(f"cannot read {file}: {exc.strerror or exc}") from None
    if size == 0:
        raise AvatarImageError(f"{file.name} is empty (0 bytes), not an image")
    if not os.access(file, os.R_OK):
        raise AvatarImageError(f"cannot read {file}: permission denied")


def _check_header(file: Path, img: Image.Image, *, max_pixels: int) -> None:
    """Reject by the header's declared size, before a single pixel is decoded."""
    if img.format not in SUPPORTED_FORMATS:  # formats= already filters; belt and braces
        raise AvatarImageError(_unsupported_message(file, img.format))
    width, height = img.size
    if width * height > max_pixels:
        raise AvatarImageError(
            f"{file.name} is too large: {width}x{height} is {_megapixels(width * height)} MP, "
            f"the limit is {_megapixels(max_pixels)} MP; scale the photo down and try again"
        )
    if min(width, height) < MIN_SIDE:
        raise AvatarImageError(
            f"{file.name} is too small: {width}x{height}; both sides must be at least "
            f"{MIN_SIDE} pixels"
        )


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:  # a broken EXIF block must not cost the user their photo
        logger.warning("ignoring unreadable EXIF orientation in image: %s", exc)
        return img
    return upright if upright is not None else img


def _to_rgb_array(
    img: Image.Image, *, background: tuple[int, int, int], name: str
) -> npt.NDArray[np.uint8]:
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _gray_array_to_rgb(_high_depth_to_uint8(img))
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
        return _composite(rgba, background)
    if mode == "RGB":
        rgb = img
    elif mode in ("L", "P", "CMYK", "YCbCr"):
        rgb = img.convert("RGB")
    else:
        try:
            rgb = img.convert("RGB")
        except ValueError:
            raise AvatarImageError(
                f"{name} uses the colour mode {mode}, which cannot be converted to RGB"
            ) from None
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _high_depth_to_uint8(img: Image.Image) -> npt.NDArray[np.uint8]:
    """16-bit, 32-bit integer and float grayscale to 8 bits, keeping the full range."""
    data = np.asarray(img)
    if img.mode.startswith("I;16"):
        # 65535 / 257 = 255 exactly, so white stays white.
        scaled = data.astype(np.float32) / 257.0
    elif img.mode == "F":
        values = data.astype(np.float32)
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 0.0
        values = np.nan_to_num(values, nan=0.0, posinf=top, neginf=0.0)
        # Float images are either 0..1 or 0..255 by convention.
        scaled = values * 255.0 if top <= 1.0 else values
    else:  # "I": 32-bit signed; PNG/TIFF 16-bit data often arrives this way
        values = data.astype(np.float64)
        top = float(values.max()) if values.size else 0.0
        scaled = values / 257.0 if top > 255.0 else values
    out: npt.NDArray[np.uint8] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def _gray_array_to_rgb(gray: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _composite(
    rgba: npt.NDArray[np.uint8], background: tuple[int, int, int]
) -> npt.NDArray[np.uint8]:
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    color = rgba[:, :, :3].astype(np.float32)
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    out = color * alpha + bg * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def _check_png_checksums(file: Path) -> None:
    """Every PNG chunk's CRC must match: Pillow skips the image-data checksums, so a flipped
    byte would otherwise decode into a garbage picture (and then "no face found")."""
    with file.open("rb") as fh:
        if fh.read(8) != _PNG_SIGNATURE:
            raise AvatarImageError(f"{file.name} is damaged: not a PNG signature")
        while True:
            header = fh.read(8)
            if not header:
                raise AvatarImageError(f"{file.name} is damaged or truncated: no IEND chunk")
            if len(header) < 8:
                raise AvatarImageError(f"{file.name} is damaged or truncated mid-chunk")
            length, kind = struct.unpack(">I4s", header)
            crc = zlib.crc32(kind)
            left = length
            while left:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    raise AvatarImageError(f"{file.name} is damaged or truncated mid-chunk")
                crc = zlib.crc32(block, crc)
                left -= len(block)
            stored = fh.read(4)
            if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc:
                name = kind.decode("latin-1")
                raise AvatarImageError(
                    f"{file.name} is damaged: the checksum of its {name!r} chunk does not match "
                    "(the file was altered or corrupted in transfer)"
                )
            if kind == b"IEND":
                return


def _unsupported_message(file: Path, detected: str | None = None) -> str:
    supported = ", ".join(_FORMAT_LABELS[f] for f in SUPPORTED_FORMATS)
    kind = detected or _sniff_format(file)
    if kind is not None:
        return f"{file.name} is a {kind} image, which is not supported; use {supported}"
    return f"{file.name} is not an image this app can read (supported formats: {supported})"


def _sniff_format(file: Path) -> str | None:
    try:
        with file.open("rb") as fh:
            head = fh.read(32)
    except OSError:
        return None
    for signature, name in _KNOWN_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(head[8:12])
    stripped = head.lstrip()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "SVG"
    return None


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".rstrip("0").rstrip(".")
