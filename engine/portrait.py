"""Load a user's portrait as the encoders expect it: RGB `[3, size, size]` float32 in `[0, 1]`.

Training portraits are RGBA renders composited on white, so a user's picture is brought to the same form:
transparency composited over white, any mode (grayscale, palette, CMYK, 16-bit) to RGB, EXIF orientation applied,
a centre square crop, then a high-quality (LANCZOS) resize. Every problem with the input is one `UserError` that
names the file and says what is wrong.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import UserError

PORTRAIT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 100_000_000
"""Largest accepted image (width × height), checked from the header before any pixel is decoded."""
REDUCING_GAP = 2.0
"""Downscales by more than this factor first shrink by an integer factor (fast box reduce), then LANCZOS."""

MIN_VISIBLE_FRACTION = 0.01
"""An image with fewer visible pixels (alpha ≥ 128) than this share has nothing to make an avatar from."""
MIN_COLOUR_STD = 2.0
"""Visible pixels whose every channel varies less than this (in 0–255 steps) are one flat colour."""
_CONTENT_SAMPLE = 1 << 20  # the content check looks at about this many pixels (a strided view of big images)

PortraitSource = Union[str, Path, Image.Image, np.ndarray]
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def load_portrait(source: PortraitSource, size: int, check_content: bool = False) -> torch.Tensor:
    """A portrait (file path, PIL image or uint8 array `[H, W, 3|4]` / `[H, W]`) → `[3, size, size]` float32 in
    `[0, 1]`: composited over white, EXIF-rotated, centre-cropped to a square, LANCZOS-resized. `check_content`:
    refuse an image with nothing to see (`check_visible_content`)."""
    image, name = open_portrait(source, size)
    if check_content:
        check_visible_content(image, name)
    image = _square_resize(over_white(image), size)
    pixels = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)


def open_portrait(source: PortraitSource, size: int | None = None) -> tuple[Image.Image, str]:
    """Open and validate any accepted source → (8-bit RGB image, or RGBA when it has transparency, with the EXIF
    orientation applied; the name used in messages). Every problem is one `UserError`. With `size` (the final
    size wanted from the short side) JPEGs much larger than that decode at a reduced scale, so the image may be
    smaller than the file; without it the image has the file's full size."""
    if size is not None and size < 1:
        raise ValueError(f"size must be ≥ 1, got {size}")
    image, name = _open_source(source, size)
    return _to_rgb_or_rgba(ImageOps.exif_transpose(image), name), name


def over_white(image: Image.Image) -> Image.Image:
    """An RGB or RGBA image (as `open_portrait` gives) → RGB, transparency composited over white."""
    if image.mode != "RGBA":
        return image
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image).convert("RGB")


def check_visible_content(image: Image.Image, name: str, what: str = "the image", hint: str = "") -> None:
    """Refuse (one `UserError`) an RGB/RGBA image with nothing to see: fully or almost fully transparent, or one
    flat colour. An avatar made from it would be made from nothing. `what` names the image in the message,
    `hint` (appended) says what to change."""
    pixels = _content_sample(np.asarray(image))
    colours = pixels[..., :3].reshape(-1, 3)
    if image.mode == "RGBA":
        visible = pixels[..., 3].reshape(-1) >= 128
        if not pixels[..., 3].any():
            raise UserError(f"{name}: {what} is fully transparent: there is nothing to make an avatar from{hint}")
        if visible.mean() < MIN_VISIBLE_FRACTION:
            raise UserError(f"{name}: {what} is almost fully transparent (only {visible.mean():.1%} of it is "
                            f"visible): there is nothing to make an avatar from{hint}")
        colours = colours[visible]
    if colours.astype(np.float32).std(axis=0).max() < MIN_COLOUR_STD:
        raise UserError(f"{name}: {what} is one flat colour: there is no face or person to make an avatar "
                        f"from{hint}")


def _content_sample(pixels: np.ndarray) -> np.ndarray:
    stride = max(1, int(np.sqrt(pixels.shape[0] * pixels.shape[1] / _CONTENT_SAMPLE)))
    return pixels[::stride, ::stride]


def portrait_hash(source: PortraitSource) -> str:
    """sha256 (hex) identifying the input: of the file's bytes for a path (equal to `sha256sum FILE`); for an
    array or PIL image, of its shape/mode header followed by its pixel bytes (so equal bytes in another shape
    differ)."""
    if isinstance(source, (str, Path)):
        path = _check_path(Path(source))
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    if isinstance(source, Image.Image):
        header = f"{source.mode}:{source.size}".encode()
        return hashlib.sha256(header + source.tobytes()).hexdigest()
    if isinstance(source, np.ndarray):
        array = np.ascontiguousarray(source)
        header = f"{array.dtype.str}:{array.shape}".encode()
        return hashlib.sha256(header + array.tobytes()).hexdigest()
    raise TypeError(f"a portrait must be a path, a PIL image or a numpy array, got {type(source).__name__}")


# ------------------------------------------------------------------------------------------------- opening
def _open_source(source: PortraitSource, size: int | None) -> tuple[Image.Image, str]:
    """(decoded PIL image, name for messages) from any accepted source."""
    if isinstance(source, (str, Path)):
        path = _check_path(Path(source))
        return _open_file(path, size), str(path)
    if isinstance(source, Image.Image):
        _check_dimensions(source.size, "the portrait image")
        return source, "the portrait image"
    if isinstance(source, np.ndarray):
        return _image_from_array(source), "the portrait array"
    raise TypeError(f"a portrait must be a path, a PIL image or a numpy array, got {type(source).__name__}")


def _check_path(path: Path) -> Path:
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes)")
    return path


def _open_file(path: Path, size: int | None) -> Image.Image:
    """Open, check the header's size, then decode fully (so a truncated or corrupt file fails here, not later)."""
    try:
        with warnings.catch_warnings():
            # our own limit (checked next) decides; Pillow's warning below its hard limit is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path}: the image is too large ({exc}); the limit is {MAX_PIXELS // 1_000_000} "
                        "megapixels") from exc
    except UnidentifiedImageError as exc:
        raise UserError(f"{path}: not an image Pillow can read (expected PNG, JPEG, WebP, ...)") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot open the file ({exc})") from exc
    _check_dimensions(image.size, str(path))
    if size is not None:
        _draft_for(image, size)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: the image is truncated or corrupt ({exc})") from exc
    return image


def _check_dimensions(dims: tuple[int, int], name: str) -> None:
    width, height = dims
    if width <= 0 or height <= 0:
        raise UserError(f"{name}: the image has zero size ({width}×{height})")
    if width * height > MAX_PIXELS:
        raise UserError(f"{name}: the image is too large ({width}×{height} = {width * height / 1e6:.0f} megapixels; "
                        f"the limit is {MAX_PIXELS // 1_000_000})")


def _draft_for(image: Image.Image, size: int) -> None:
    """For JPEG, decode at a reduced scale (DCT scaling) when the crop stays ≥ 2× the target: huge photos load
    in a fraction of the time. Other formats ignore drafts."""
    if image.format != "JPEG":
        return
    width, height = image.size
    scale = min(width, height) / (REDUCING_GAP * size)
    if scale > 1:
        image.draft(image.mode, (int(np.ceil(width / scale)), int(np.ceil(height / scale))))


def _image_from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise UserError(f"the portrait array must be uint8 [H, W, 3|4], got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        mode = "RGB" if array.shape[2] == 3 else "RGBA"
    elif array.ndim == 2:
        mode = "L"
    else:
        raise UserError(f"the portrait array must be [H, W, 3|4] or [H, W], got shape {list(array.shape)}")
    _check_dimensions((array.shape[1], array.shape[0]), "the portrait array")
    return Image.fromarray(np.ascontiguousarray(array), mode)


# --------------------------------------------------------------------------------------------- conversion
def _to_rgb_or_rgba(image: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode → 8-bit RGB, or RGBA when it has transparency (alpha channel or palette/colour-key)."""
    if image.mode in _SIXTEEN_BIT or image.mode in ("I", "F"):
        image = _high_depth_to_l(image)
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")  # palette / colour-key transparency becomes a real alpha channel
    if image.mode in _ALPHA_MODES:
        return image.convert("RGBA")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UserError(f"{name}: cannot convert image mode {image.mode!r} to RGB ({exc})") from exc


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale → 8-bit L, scaled rather than clipped (Pillow's convert clips)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode in _SIXTEEN_BIT or (image.mode == "I" and values.max(initial=0) > 255):
        values = values / 65535.0  # 16-bit data (PNG 16-bit grayscale may arrive as "I")
    elif image.mode == "I":
        values = values / 255.0
    # mode "F" is taken to hold [0, 1] intensities
    return Image.fromarray(np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8), "L")


def _square_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre square crop and LANCZOS resize in one call (the crop is the resize `box`); big downscales reduce
    by an integer factor first (`reducing_gap`)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    if side == size:
        return image.crop(box)
    return image.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)


__all__ = ["MAX_PIXELS", "MIN_COLOUR_STD", "MIN_VISIBLE_FRACTION", "PORTRAIT_SUFFIXES", "PortraitSource",
           "check_visible_content", "load_portrait", "open_portrait", "over_white",
           "portrait_hash"]
