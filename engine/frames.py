"""Write rendered frames: numbered PNGs (RGBA or over white), or a turntable GIF/MP4; always with a JSON record."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from engine.io import atomic_write, atomic_write_bytes, atomic_write_json


def to_uint8(rgba: np.ndarray, background: str) -> np.ndarray:
    """[H, W, 4] float (rgb already over `background`; premultiplied when transparent) → uint8 RGBA/RGB."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    if background == "transparent":
        straight = np.where(alpha > 1e-6, rgb / np.maximum(alpha, 1e-6), 0.0)
        return (np.concatenate([straight, alpha], -1).clip(0, 1) * 255 + 0.5).astype(np.uint8)
    return (rgb.clip(0, 1) * 255 + 0.5).astype(np.uint8)


def write_frames(out: Path, frames: list[np.ndarray], fmt: str, background: str, record: dict) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = [to_uint8(f, background) for f in frames]
    atomic_write_json(out / "render.json", {**record, "background": background, "format": fmt})
    if fmt == "png":
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            atomic_write_bytes(out / f"{i:04d}.png", buffer.getvalue())
        return out
    import imageio.v3 as iio

    opaque = [im if im.shape[-1] == 3 else _over_white(im) for im in images]
    path = out / f"turntable.{fmt}"
    if fmt == "gif":
        atomic_write(path, lambda tmp: iio.imwrite(tmp, opaque, extension=".gif", duration=40, loop=0))
    else:
        atomic_write(path, lambda tmp: iio.imwrite(tmp, opaque, extension=".mp4", fps=25, codec="libx264"))
    return path


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return (rgba[..., :3] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
