"""The training framing, the crop-box maths, and the one function that cuts a crop box out of an image.

The models only ever saw the synthetic busts of `rodinhd synth`: frontal camera (40° FOV, radius 2.85, looking
at y = -0.05), head centre at y = 0.26. A real photo is cut so its face lands where, and as large as, those faces
are. The numbers below are measured on the 112 training portraits of data/diff112 by running the chosen detector
(`face.detect_faces`) on them exactly as it runs on photos: it fires on 77 of 112, and the medians of its boxes
give the target (5–95 %: centre x 127.5–129, y 86–89, side 49–58 px of 256). Projecting the generator's head
geometry with the frontal camera agrees: the eye midpoint lands at (128.0, 83.3) px, 0.42 of the way down that
box, where the eyes of the two real sample photos sit at 0.36–0.37 of theirs (a 3 px difference at 256).
`benchmarks/face_detection.py` re-measures all of it when the training portraits are present.

Coordinates are continuous source pixels: pixel (i, j) covers [i, i+1) × [j, j+1), so the centre of the top-left
pixel is (0.5, 0.5). Angles are degrees, positive = counter-clockwise as seen on screen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from engine.errors import UserError

FACE_CENTRE = (0.502, 0.342)
"""Face-box centre in a training portrait, as a fraction of its side (median of 128.5, 87.5 px at 256)."""
FACE_SIZE = 0.207
"""Face-box side / portrait side in the training portraits (median 53 px at 256)."""

# Where the training busts are, as fractions of the portrait side, from the per-pixel alpha of all 112 training
# portraits. Outside BUST_OUTLINE no training portrait has any alpha (the union, grown by ~8 px at 256): long
# hair and afros reach y = 0.09, shoulders x = 0.17–0.84, the bust is cut flat at y = 0.905.
BUST_HEAD = ((0.5, 0.328), (0.273, 0.281))
"""Ellipse (centre, semi-axes) around every training head and its hair."""
BUST_OUTLINE = ((0.234, 0.391), (0.766, 0.391), (0.867, 0.688), (0.828, 0.938), (0.172, 0.938), (0.133, 0.688))
"""Polygon around every training neck, long hair and torso (joined to BUST_HEAD)."""
# Where most training portraits are opaque (mean alpha > 0.5): the typical head, neck and torso.
TYPICAL_HEAD = ((0.5, 0.336), (0.162, 0.133))
TYPICAL_BODY = ((0.438, 0.43), (0.563, 0.43), (0.563, 0.563), (0.703, 0.563), (0.785, 0.594), (0.785, 0.883),
                (0.215, 0.883), (0.215, 0.594), (0.297, 0.563), (0.438, 0.563))
FACE_CORE = (0.30, 0.40)
"""Semi-axes of the ellipse that is surely face, as fractions of the face-box side (inside cheeks, brow, chin)."""
CHEST_CORE = ((0.5, 0.78), (0.12, 0.07))
"""Ellipse on the chest, opaque in every training portrait: it keeps GrabCut from dropping a body whose colours
also occur in the background (the astronaut's suit: without it the body is lost at some working sizes)."""


@dataclass(frozen=True)
class CropBox:
    """A square of the source: top-left corner (x, y) and side `size` before rotation, turned by `angle_degrees`
    (counter-clockwise on screen) about its centre. It may reach past the image: that part is transparent."""

    x: float
    y: float
    size: float
    angle_degrees: float = 0.0

    @classmethod
    def parse(cls, text: str) -> CropBox:
        """"X,Y,SIZE" in source pixels (the CLI's --crop)."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            x, y, size = (float(p) for p in parts)
        except ValueError:
            raise UserError(f"--crop must be X,Y,SIZE in pixels, e.g. 120,40,400 (got {text!r})") from None
        if not all(math.isfinite(v) for v in (x, y, size)) or size < 1:
            raise UserError(f"--crop SIZE must be a number ≥ 1 and X, Y finite (got {text!r})")
        return cls(x, y, size)

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.size / 2, self.y + self.size / 2

    def corners(self) -> np.ndarray:
        """The four corners [4, 2] in source pixels (top-left, top-right, bottom-right, bottom-left of the output)."""
        unit = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        return apply(output_to_source(self, 1), unit)

    def bounds(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounds (x0, y0, x1, y1) of the rotated square."""
        corners = self.corners()
        return (*corners.min(0), *corners.max(0))

    def check_overlaps(self, width: int, height: int, name: str) -> None:
        x0, y0, x1, y1 = self.bounds()
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise UserError(f"{name}: the crop {self.x:g},{self.y:g},{self.size:g} lies outside the "
                            f"{width}×{height} image; give X,Y,SIZE inside it")

    def to_dict(self) -> dict:
        return {"x": round(self.x, 2), "y": round(self.y, 2), "size": round(self.size, 2),
                "angle_degrees": round(self.angle_degrees, 2)}


def _rotation(angle_degrees: float) -> np.ndarray:
    """Turns output axes into source axes for a square rotated counter-clockwise on screen (y points down)."""
    c, s = math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))
    return np.array([[c, s], [-s, c]])


def output_to_source(crop: CropBox, size: int) -> np.ndarray:
    """Affine [2, 3]: continuous output pixel coordinates of a `size`² image → source coordinates."""
    linear = _rotation(crop.angle_degrees) * (crop.size / size)
    offset = np.asarray(crop.centre) - linear @ np.array([size / 2, size / 2])
    return np.concatenate([linear, offset[:, None]], 1)


def source_to_output(crop: CropBox, size: int) -> np.ndarray:
    """Inverse of `output_to_source`."""
    forward = np.vstack([output_to_source(crop, size), [0.0, 0.0, 1.0]])
    return np.linalg.inv(forward)[:2]


def apply(affine: np.ndarray, points) -> np.ndarray:
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    return points @ affine[:, :2].T + affine[:, 2]


def crop_for_face(centre: tuple[float, float], face_size: float, angle_degrees: float = 0.0) -> CropBox:
    """The square that puts a face box (centre, side in source pixels) at FACE_CENTRE with side FACE_SIZE,
    upright after turning by `angle_degrees`."""
    side = face_size / FACE_SIZE
    offset = (np.asarray(FACE_CENTRE) - 0.5) * side  # face centre minus crop centre, in output axes
    crop_centre = np.asarray(centre) - _rotation(angle_degrees) @ offset
    return CropBox(float(crop_centre[0] - side / 2), float(crop_centre[1] - side / 2), float(side),
                   float(angle_degrees))


def cut_square(image: Image.Image, crop: CropBox, size: int) -> np.ndarray:
    """The pixels of `crop` in an RGB or RGBA image → uint8 RGBA [size, size, 4], alpha 0 where the square
    reaches past the image. Big reductions average whole source pixels first (INTER_AREA, like a LANCZOS resize:
    no aliasing), then one affine warp turns and places the square. Colours stay premultiplied by alpha meanwhile,
    so transparent neighbours never darken the edges."""
    region, origin = _source_region(image, crop)
    if region is None:
        return np.zeros((size, size, 4), np.uint8)
    shrink = crop.size / size
    scale = np.ones(2)
    if shrink > 1.0:
        height, width = region.shape[:2]
        reduced = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        region = cv2.resize(region, reduced, interpolation=cv2.INTER_AREA)  # on uint8: fast for big photos
        scale = np.array([reduced[0] / width, reduced[1] / height])
    to_region = output_to_source(crop, size)
    to_region[:, 2] -= origin
    to_region *= scale[:, None]
    # cv2 puts pixel centres at integer coordinates; ours are at +0.5
    to_region[:, 2] += to_region[:, :2] @ np.array([0.5, 0.5]) - 0.5
    interpolation = cv2.INTER_CUBIC if shrink < 1.0 else cv2.INTER_LINEAR
    out = cv2.warpAffine(region.astype(np.float32), to_region, (size, size),
                         flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0, 0))
    out = np.clip(out, 0.0, 255.0)
    alpha = out[..., 3:]
    out[..., :3] = np.where(alpha > 0, out[..., :3] * 255.0 / np.maximum(alpha, 1e-6), 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _source_region(image: Image.Image, crop: CropBox) -> tuple[np.ndarray | None, np.ndarray]:
    """The part of the image under the (rotated) square, 2 px wider for the interpolation, as premultiplied
    uint8 RGBA, and its top-left corner; (None, _) when they do not overlap."""
    x0, y0, x1, y1 = crop.bounds()
    box = (max(0, math.floor(x0) - 2), max(0, math.floor(y0) - 2),
           min(image.width, math.ceil(x1) + 2), min(image.height, math.ceil(y1) + 2))
    origin = np.array(box[:2], dtype=np.float64)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None, origin
    return np.asarray(image.crop(box).convert("RGBa")), origin  # RGBa: Pillow's premultiplied RGBA


def centre_square(width: int, height: int) -> CropBox:
    """The centred square `load_portrait` cuts (same integer offsets)."""
    side = min(width, height)
    return CropBox(float((width - side) // 2), float((height - side) // 2), float(side))


__all__ = ["BUST_HEAD", "BUST_OUTLINE", "CHEST_CORE", "FACE_CENTRE", "FACE_CORE", "FACE_SIZE", "TYPICAL_BODY",
           "TYPICAL_HEAD", "CropBox", "apply", "centre_square", "crop_for_face", "cut_square", "output_to_source",
           "source_to_output"]
