"""Pieces shared by the importers: pose conversion, image conversion and writing one avatar folder.

An importer turns its source layout into `SourceViews` (image paths + camera-to-world matrices already in our
convention, see engine.cameras) and calls `write_avatar`, which writes the folder described in
training.data.format. The caller passes a fresh temporary folder, so plain (non-atomic) writes are fine here.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.cameras import is_rigid
from engine.errors import UserError
from engine.io import atomic_write_json, atomic_write_text
from training.data.format import (
    ATTRIBUTES_FILE, CAPTION_FILE, PORTRAIT_FILE, TEST_DIR, TEST_TRANSFORMS, TRAIN_DIR, TRAIN_TRANSFORMS,
    Frame, ViewSet, frame_name, write_transforms,
)

# World rotation taking Blender's Z-up to our Y-up: (x, y, z) -> (x, z, -y). Blender's front (-Y) becomes +Z.
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


@dataclass(frozen=True)
class SourceFrame:
    image: Path  # any image PIL reads
    c2w: np.ndarray  # [4, 4] camera-to-world in our convention (already converted)


@dataclass
class SourceViews:
    camera_angle_x: float  # radians
    frames: list[SourceFrame] = field(default_factory=list)


def convert_pose(c2w: Any, scale: float, z_up: bool, where: str) -> np.ndarray:
    """A source camera-to-world [4, 4] (OpenGL camera axes) → ours: world rotated to Y-up, translation × scale."""
    m = np.asarray(c2w, dtype=np.float64)
    if m.shape == (3, 4):  # some exporters drop the constant last row
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4) or not is_rigid(m):
        raise UserError(f"{where}: camera matrix is not a 4x4 rigid transform (rotation + translation)")
    if z_up:
        m = Z_UP_TO_Y_UP @ m
    m = m.copy()
    m[:3, 3] *= scale
    return m


def check_fov(camera_angle_x: float, where: str) -> float:
    if not (isinstance(camera_angle_x, (int, float)) and 0.0 < camera_angle_x < math.pi):
        raise UserError(f"{where}: camera_angle_x must be a number of radians in (0, pi), got {camera_angle_x!r}")
    return float(camera_angle_x)


def save_rgba_png(src: Path, dst: Path) -> bool:
    """Write `src` to `dst` as an RGBA PNG. Returns True if it had to be converted (False: bytes copied as is).

    RGBA PNGs are copied bit-exactly; anything else (RGB/JPG, grey, palette) becomes RGBA, alpha 255 where the
    source has none. Raises UserError naming the file if it is missing or does not decode.
    """
    try:
        with Image.open(src) as img:
            img.load()  # decode fully: a truncated or corrupt file must fail here, not during training
            if img.format == "PNG" and img.mode == "RGBA":
                shutil.copyfile(src, dst)
                return False
            img.convert("RGBA").save(dst, format="PNG")
            return True
    except FileNotFoundError as exc:
        raise UserError(f"{src}: image file not found") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # PIL raises these for unreadable images
        raise UserError(f"{src}: cannot decode image ({exc})") from exc


def _write_split(dest: Path, views: SourceViews, folder: str, transforms: str, extra: dict | None) -> tuple[int, set]:
    """Write one split's images and transforms file. Returns (converted count, set of image sizes)."""
    (dest / folder).mkdir(parents=True, exist_ok=True)
    frames, converted, sizes = [], 0, set()
    for i, frame in enumerate(views.frames):
        rel = f"{folder}/{frame_name(i)}"
        converted += save_rgba_png(frame.image, dest / rel)
        with Image.open(dest / rel) as img:
            sizes.add(img.size)
        frames.append(Frame(rel, frame.c2w))
    write_transforms(dest / transforms, ViewSet(views.camera_angle_x, frames), extra)
    return converted, sizes


def write_avatar(dest: Path, train: SourceViews, test: SourceViews | None, attributes: dict[str, Any],
                 caption: str, extra: dict[str, Any] | None = None) -> list[str]:
    """Write an avatar folder: training frame 0 is also written as the portrait. Returns warnings (strings)."""
    if not train.frames:
        raise UserError(f"{dest.name}: no training views to import")
    warnings = []
    converted, sizes = _write_split(dest, train, TRAIN_DIR, TRAIN_TRANSFORMS, extra)
    if test is not None and test.frames:
        test_converted, test_sizes = _write_split(dest, test, TEST_DIR, TEST_TRANSFORMS, extra)
        converted, sizes = converted + test_converted, sizes | test_sizes
    shutil.copyfile(dest / TRAIN_DIR / frame_name(0), dest / PORTRAIT_FILE)  # the portrait is view 0, bit-exactly
    if converted:
        warnings.append(f"{converted} image(s) were not RGBA PNGs (e.g. RGB JPG); converted to RGBA, "
                        "alpha 255 where the source had none")
    if len(sizes) > 1:
        warnings.append(f"images have different sizes: {sorted(sizes)}")
    atomic_write_json(dest / ATTRIBUTES_FILE, attributes)
    atomic_write_text(dest / CAPTION_FILE, caption + "\n" if caption else "")
    return warnings
