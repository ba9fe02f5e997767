"""engine.portrait: golden pixels, centre crop, modes, EXIF, and one UserError per kind of bad input."""
from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import UserError
from engine.portrait import MAX_PIXELS, PORTRAIT_SUFFIXES, load_portrait, portrait_hash


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width × height` RGB pixels but holds no pixel data (a few dozen bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


# ----------------------------------------------------------------------------------------------- pixels
def test_half_transparent_red_composites_over_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[...] = (255, 0, 0, 128)
    path = save(Image.fromarray(rgba, "RGBA"), tmp_path / "p.png")
    for source in (path, rgba, Image.fromarray(rgba, "RGBA")):
        out = load_portrait(source, 8)
        assert out.shape == (3, 8, 8) and out.dtype == torch.float32
        expected = torch.tensor([1.0, 0.5, 0.5]).view(3, 1, 1).expand(3, 8, 8)
        torch.testing.assert_close(out, expected, atol=2 / 255, rtol=0)


def test_fully_transparent_is_white_and_opaque_is_unchanged():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:, :2] = (10, 20, 30, 255)
    out = load_portrait(rgba, 4)
    assert torch.equal(out[:, :, 2:], torch.ones(3, 4, 2))
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([10, 20, 30]) / 255.0)


def test_centre_crop_keeps_a_centred_marker():
    wide = np.zeros((40, 100, 3), np.uint8)
    wide[18:22, 48:52] = 255  # a white square at the centre of a wide black image
    out = load_portrait(wide, 40)
    ys, xs = torch.nonzero(out[0] > 0.5, as_tuple=True)
    assert ys.float().mean().item() == pytest.approx(19.5, abs=0.01)
    assert xs.float().mean().item() == pytest.approx(19.5, abs=0.01)  # (100-40)/2 = 30 cut on each side
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    out_t = load_portrait(tall, 40)
    torch.testing.assert_close(out_t, out.transpose(1, 2))


def test_large_downscale_stays_accurate_and_fast():
    big = np.zeros((3000, 3000, 3), np.uint8)
    big[:, 1500:] = 200
    start = time.perf_counter()
    out = load_portrait(big, 64)
    assert time.perf_counter() - start < 1.0
    assert out[:, :, :30].max() < 0.01 and (out[:, :, 34:] - 200 / 255).abs().max() < 0.01


def test_resize_is_bounded_and_uniform_stays_uniform():
    grey = np.full((50, 70, 3), 77, np.uint8)
    out = load_portrait(grey, 33)
    assert out.shape == (3, 33, 33)
    torch.testing.assert_close(out, torch.full_like(out, 77 / 255), atol=1 / 255, rtol=0)


# ------------------------------------------------------------------------------------------------ modes
def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.full((16, 16), 32768, np.uint16)  # half of the 16-bit range
    path = save(Image.fromarray(values), tmp_path / "g16.png")
    assert Image.open(path).mode in ("I;16", "I")
    out = load_portrait(path, 16)
    torch.testing.assert_close(out, torch.full_like(out, 128 / 255), atol=1 / 255, rtol=0)


def test_palette_with_transparency_and_other_modes(tmp_path):
    palette = Image.new("P", (6, 6), 0)
    palette.putpalette([0, 0, 255] + [255, 0, 0] * 255)
    palette.putpixel((0, 0), 1)
    path = save(palette, tmp_path / "pal.png", transparency=1)  # palette index 1 (red) is transparent
    out = load_portrait(path, 6)
    torch.testing.assert_close(out[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(out[:, 3, 3], torch.tensor([0.0, 0.0, 1.0]))
    for mode, colour in (("L", 128), ("LA", (128, 255)), ("1", 1), ("CMYK", (0, 0, 0, 0))):
        image = Image.new(mode, (5, 7), colour)
        result = load_portrait(save(image, tmp_path / f"m{mode}.{'tif' if mode == 'CMYK' else 'png'}"), 5)
        assert result.shape == (3, 5, 5) and 0 <= result.min() and result.max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(image, tmp_path / "rot.png", exif=exif.tobytes())
    out = load_portrait(path, 20)
    # displayed upright, the white half is on top: rows 0..9 white, 10..19 black
    assert out[:, :8].min() > 0.95 and out[:, 12:].max() < 0.05


def test_jpeg_draft_path_loads(tmp_path):
    photo = np.full((900, 600, 3), 90, np.uint8)
    path = save(Image.fromarray(photo), tmp_path / "photo.jpg", quality=95)
    out = load_portrait(path, 64)
    torch.testing.assert_close(out, torch.full_like(out, 90 / 255), atol=3 / 255, rtol=0)


# ----------------------------------------------------------------------------------------------- errors
def expect_user_error(source, *words: str) -> str:
    with pytest.raises(UserError) as info:
        load_portrait(source, 32)
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


def test_missing_file_and_directory(tmp_path):
    expect_user_error(tmp_path / "nope.png", "nope.png", "no such file")
    expect_user_error(tmp_path, str(tmp_path), "folder")


def test_not_an_image_and_empty_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    expect_user_error(text, "notes.png", "not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    expect_user_error(empty, "empty.png", "empty")


def test_truncated_image(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    expect_user_error(path, "cut.png", "truncated or corrupt")


def test_huge_images_are_refused_from_the_header(tmp_path):
    start = time.perf_counter()
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))  # beyond Pillow's own hard limit
    expect_user_error(bomb, "bomb.png", "too large")
    over = tmp_path / "over.png"
    over.write_bytes(png_header_only(10001, 10001))  # over our 100 MP limit, under Pillow's
    assert 10001 * 10001 > MAX_PIXELS
    expect_user_error(over, "over.png", "too large", "10001×10001")
    assert time.perf_counter() - start < 2.0


def test_zero_size_and_bad_arrays():
    expect_user_error(np.zeros((0, 5, 3), np.uint8), "zero size")
    expect_user_error(Image.new("RGB", (0, 0)), "zero size")
    expect_user_error(np.zeros((4, 4, 2), np.uint8), "shape")
    expect_user_error(np.zeros((4, 4, 3), np.float32), "uint8")


# ----------------------------------------------------------------------------------------------- hashes
def test_portrait_hash(tmp_path):
    path = save(Image.new("RGB", (3, 3), (1, 2, 3)), tmp_path / "h.png")
    assert portrait_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    a = np.zeros((2, 6, 3), np.uint8)
    assert portrait_hash(a) == portrait_hash(a.copy())
    assert portrait_hash(a) != portrait_hash(a.reshape(4, 3, 3))
    assert len(portrait_hash(Image.new("RGB", (2, 2)))) == 64
    with pytest.raises(UserError, match="no such file"):
        portrait_hash(tmp_path / "missing.png")
    assert ".png" in PORTRAIT_SUFFIXES and ".jpg" in PORTRAIT_SUFFIXES
