"""Small synthetic images for the input-checking tests: something to see but no face, a faceless photo a manual
crop can use, and images with nothing to see at all (the refusals)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def textured(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Uniform uint8 noise `[H, W, channels]` (`[H, W]` for channels=0): visible content, no face."""
    shape = (height, width, channels) if channels else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def faceless_photo(size: int = 300, seed: int = 0) -> np.ndarray:
    """A reddish disc on a light grey, both slightly noisy: no face for the detector, yet a manual crop around
    the disc keeps it through GrabCut (about 40 % of the square stays visible)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    pixels = 200 + rng.normal(0, 6, (size, size, 3))
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.23 * size) ** 2
    pixels[disc] = (150, 60, 50) + rng.normal(0, 6, (int(disc.sum()), 3))
    return pixels.clip(0, 255).astype(np.uint8)


def save_fully_transparent_palette_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A palette PNG whose every pixel is index 0 and index 0 is transparent (alpha 0 everywhere)."""
    image = Image.new("P", size, 0)
    image.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    image.save(path, transparency=0)
    return path


def mostly_transparent_rgba(size: int = 200, visible: int = 10) -> np.ndarray:
    """RGBA with a `visible`² textured opaque patch in the middle, the rest alpha 0 (0.25 % for the defaults)."""
    pixels = np.zeros((size, size, 4), np.uint8)
    start = (size - visible) // 2
    pixels[start:start + visible, start:start + visible, :3] = textured(visible, visible)
    pixels[start:start + visible, start:start + visible, 3] = 255
    return pixels
