"""Safe photo loading: real portraits, every pixel mode, and hostile or broken files."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.media.avatar_image import (
    BACKGROUND_RGB,
    MAX_PIXELS,
    AvatarImageError,
    load_avatar_image,
)

SOURCES = ["source_1.png", "source_2.png", "source_3.jpg", "source_4.png"]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG header for width x height RGB with one tiny IDAT (a bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _gradient(width: int = 120, height: int = 80) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 90, np.float32),
        ],
        axis=2,
    )
    return rgb.astype(np.uint8)


# -- real portraits --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
def test_fixture_portraits_load_as_uint8_rgb(fixtures_dir: Path, name: str) -> None:
    path = fixtures_dir / name
    rgb = load_avatar_image(path)
    with Image.open(path) as img:
        width, height = img.size
    assert rgb.shape == (height, width, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags.c_contiguous
    assert 20 < float(rgb.mean()) < 235


def test_rgba_fixture_is_composited_not_blackened(fixtures_dir: Path) -> None:
    path = fixtures_dir / "source_2.png"
    with Image.open(path) as img:
        rgba = np.asarray(img.convert("RGBA"))
    rgb = load_avatar_image(path)
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    expected = rgba[..., :3] * alpha + np.asarray(BACKGROUND_RGB, np.float32) * (1 - alpha)
    assert np.abs(rgb.astype(np.float32) - expected).max() <= 1.0


# -- pixel modes -----------------------------------------------------------------------------


def test_content_not_extension_decides_the_format(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(_gradient()).save(path, format="PNG")
    np.testing.assert_array_equal(load_avatar_image(path), _gradient())


@pytest.mark.parametrize(
    ("fmt", "suffix"), [("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tif"), ("WEBP", "webp")]
)
def test_lossless_formats_round_trip(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = tmp_path / f"img.{suffix}"
    options = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(_gradient()).save(path, format=fmt, **options)
    np.testing.assert_array_equal(load_avatar_image(path), _gradient())


def test_jpeg_loads_close_to_source(tmp_path: Path) -> None:
    path = tmp_path / "img.jpeg"
    Image.fromarray(_gradient()).save(path, format="JPEG", quality=95)
    assert np.abs(load_avatar_image(path).astype(int) - _gradient()).mean() < 3


@pytest.mark.parametrize(("orientation", "turn"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, turn: int) -> None:
    # Stored sideways: left half red, right half blue, 80 wide x 40 high.
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = (255, 0, 0)
    stored[:, 40:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    rgb = load_avatar_image(path)
    expected = np.rot90(stored, k=turn)  # what a photo viewer shows
    assert rgb.shape == expected.shape
    assert np.abs(rgb.astype(int) - expected).mean() < 8


def test_rgba_png_transparent_areas_become_neutral_grey(tmp_path: Path) -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = (200, 30, 30)
    rgba[:, 32:, 3] = 255  # right half opaque red, left half fully transparent
    rgba[:, :32, 3] = 0
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = load_avatar_image(path)
    assert tuple(rgb[10, 5]) == BACKGROUND_RGB
    assert tuple(rgb[10, 60]) == (200, 30, 30)
    assert BACKGROUND_RGB != (0, 0, 0)


def test_half_transparent_pixels_blend(tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = 128  # black at half opacity
    path = tmp_path / "half.png"
    Image.fromarray(rgba, "RGBA").save(path)
    value = load_avatar_image(path)[0, 0]
    np.testing.assert_allclose(value, np.asarray(BACKGROUND_RGB) * (127 / 255), atol=1)


def test_16_bit_grayscale_png_keeps_full_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    rgb = load_avatar_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[-1, -1].tolist() == [255, 255, 255]
    np.testing.assert_allclose(rgb[..., 0], ramp / 257.0, atol=0.51)
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_32_bit_float_tiff(tmp_path: Path) -> None:
    data = np.linspace(0, 1, 48 * 48, dtype=np.float32).reshape(48, 48)
    path = tmp_path / "float.tif"
    Image.fromarray(data, "F").save(path)
    rgb = load_avatar_image(path)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    gray = _gradient()[..., 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path)
    rgb = load_avatar_image(path)
    np.testing.assert_array_equal(rgb, np.repeat(gray[..., None], 3, axis=2))

    bw = tmp_path / "bw.bmp"
    Image.fromarray(gray > 128).convert("1").save(bw)
    values = np.unique(load_avatar_image(bw))
    assert set(values.tolist()) <= {0, 255}


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    src = Image.fromarray(_gradient()).quantize(colors=16)
    plain = tmp_path / "palette.png"
    src.save(plain)
    rgb = load_avatar_image(plain)
    np.testing.assert_array_equal(rgb, np.asarray(src.convert("RGB")))

    keyed = tmp_path / "palette_keyed.png"
    src.save(keyed, transparency=0)
    rgb_keyed = load_avatar_image(keyed)
    index = np.asarray(src)
    assert (rgb_keyed[index == 0] == BACKGROUND_RGB).all()
    np.testing.assert_array_equal(rgb_keyed[index != 0], rgb[index != 0])


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.fromarray(_gradient()).convert("CMYK").save(path, format="JPEG", quality=95)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
    rgb = load_avatar_image(path)
    assert rgb.shape == (80, 120, 3)
    assert np.abs(rgb.astype(int) - _gradient()).mean() < 6


# -- hostile and broken files ----------------------------------------------------------------


def test_header_claiming_100000_squared_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(100_000, 100_000))
    start = time.perf_counter()
    with pytest.raises(AvatarImageError, match="too large") as info:
        load_avatar_image(path)
    assert time.perf_counter() - start < 0.5  # nothing was decoded or allocated
    assert "40 MP" in str(info.value)


def test_pillow_bomb_warning_becomes_our_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_png_claiming(10_000, 10_000))  # 100 MP: Pillow warns at open
    with pytest.raises(AvatarImageError, match=r"too large.*40 MP"):
        load_avatar_image(path)


def test_just_over_the_limit_names_size_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png_claiming(8000, 6000))  # 48 MP: over ours, under Pillow's error level
    with pytest.raises(AvatarImageError) as info:
        load_avatar_image(path)
    message = str(info.value)
    assert "8000x6000" in message and "48 MP" in message and "40 MP" in message


def test_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(_gradient()).save(path)
    with pytest.raises(AvatarImageError, match="too large"):
        load_avatar_image(path, max_pixels=5000)
    assert MAX_PIXELS == 40_000_000


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AvatarImageError, match="not an image") as info:
        load_avatar_image(path)
    assert "PNG" in str(info.value) and "JPEG" in str(info.value)


def test_unsupported_format_is_named(tmp_path: Path) -> None:
    path = tmp_path / "animation.jpg"  # the extension lies
    Image.fromarray(_gradient()).save(path, format="GIF")
    with pytest.raises(AvatarImageError, match="GIF image, which is not supported"):
        load_avatar_image(path)


def test_heic_is_named(tmp_path: Path) -> None:
    path = tmp_path / "iphone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    with pytest.raises(AvatarImageError, match="HEIC"):
        load_avatar_image(path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_gradient(400, 300)).save(buffer, format="JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(AvatarImageError, match="damaged or truncated"):
        load_avatar_image(path)


def test_truncated_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_gradient(400, 300)).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[:-200])
    with pytest.raises(AvatarImageError, match="damaged or truncated"):
        load_avatar_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AvatarImageError, match="not found"):
        load_avatar_image(tmp_path / "nobody.png")


def test_folder_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(AvatarImageError, match="folder"):
        load_avatar_image(tmp_path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AvatarImageError, match="empty"):
        load_avatar_image(empty)


def test_tiny_image(tmp_path: Path) -> None:
    path = tmp_path / "icon.png"
    Image.new("RGB", (16, 16)).save(path)
    with pytest.raises(AvatarImageError, match="too small"):
        load_avatar_image(path)


def test_error_is_a_value_error() -> None:
    assert issubclass(AvatarImageError, ValueError)
