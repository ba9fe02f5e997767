"""Face detection and head roll from the eyes, with OpenCV's Haar cascades (they ship inside the opencv wheel:
nothing to download, ~0.1 s a photo on one core).

Why Haar and why frontalface_alt2 alone: see docs/preprocess.md (measured by benchmarks/face_detection.py).
mediapipe's detector would be more robust, but its last release with bundled models (0.10.21) pins numpy<2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from engine.preprocess.framing import CropBox, apply, cut_square, output_to_source

FACE_CASCADES = ("frontalface_alt2",)
"""Tried in order until one finds a face (the benchmark measures other choices)."""
ROLL_SEARCH = (0.0, 20.0, -20.0)
"""Head rolls (degrees) searched, in order, until one finds a face: the frontal cascades only see faces within
about ±12° of upright."""
DETECT_MAX_SIDE = 640
"""Detection runs on a copy whose long side is at most this (faces of MIN_FACE stay ≥ 36 px there): a 12 MP photo
is searched in ~0.1 s instead of seconds."""
MIN_FACE = 0.1
"""Smallest face searched for, as a fraction of the short side: smaller faces would be upsampled > 2× into 256²,
and the search for them is most of the time (and most of the false positives)."""
SCALE_STEP = 1.1
MIN_NEIGHBOURS = 4
"""Overlapping raw hits needed to keep a box. 3 finds 5 more of the 112 synthetic faces and no false face on our
negatives either, but 4 leaves room for the turned searches (2×): coffee's false face there collects 6 hits."""
EYE_CASCADES = ("eye", "eye_tree_eyeglasses")
EYE_FACE_WIDTH = 200
"""The face is resampled to this width for the eye search: eyes ~30 px whatever the photo's size (the eye
cascade needs ≥ 20 px; no histogram equalisation: on the glasses of grace_hopper it hides the eyes)."""
MAX_ROLL = 30.0


@dataclass(frozen=True)
class FaceBox:
    """A detected face in source pixels; `score` = the detector's count of overlapping raw hits (more = surer),
    `angle_degrees` = the head roll of the search that found it (0 unless only a turned copy showed it)."""

    x: float
    y: float
    w: float
    h: float
    score: float
    angle_degrees: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    @property
    def size(self) -> float:
        return math.sqrt(self.w * self.h)

    def to_dict(self) -> dict:
        return {"x": round(self.x, 1), "y": round(self.y, 1), "w": round(self.w, 1), "h": round(self.h, 1),
                "score": self.score, "angle_degrees": self.angle_degrees}


@dataclass(frozen=True)
class Roll:
    """Head roll from the eye line: `angle_degrees` counter-clockwise on screen, eye centres in source pixels."""

    angle_degrees: float
    eyes: tuple[tuple[float, float], tuple[float, float]]

    def to_dict(self) -> dict:
        return {"angle_degrees": round(self.angle_degrees, 2),
                "eyes": [[round(v, 1) for v in eye] for eye in self.eyes]}


@lru_cache(maxsize=None)
def cascade(name: str) -> cv2.CascadeClassifier:
    """One of OpenCV's bundled Haar cascades by name (e.g. "frontalface_alt2"), or any cascade file (a path
    ending in .xml), loaded once."""
    path = name if name.endswith(".xml") else f"{cv2.data.haarcascades}haarcascade_{name}.xml"
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise RuntimeError(f"cannot load the OpenCV cascade {path}")
    return classifier


# ---------------------------------------------------------------------------------------------- faces
def detect_faces(image: Image.Image, cascades: tuple[str, ...] = FACE_CASCADES, min_neighbours: int = MIN_NEIGHBOURS,
                 rolls: tuple[float, ...] = ROLL_SEARCH) -> list[FaceBox]:
    """Faces in an RGB image, largest first, in its pixels. For each head roll in turn (the image turned
    to bring such a head upright), each cascade in turn, until one finds some. A cascade name ending in "+mirror"
    also searches the mirrored image (profile cascades see one side only)."""
    gray, (sx, sy) = _detection_gray(image)
    min_side = max(24, round(MIN_FACE * min(gray.shape)))
    for roll in rolls:
        turned, back = _turned(gray, roll)
        # a turned copy is a fallback and one more chance of a false face: it needs twice the support
        # (coffee gets 6 hits at +20°; the real turned faces 14 or more)
        neighbours = min_neighbours if roll == 0.0 else 2 * min_neighbours
        for name in cascades:
            boxes = _run_cascade(turned, name, min_side, neighbours)
            if boxes:
                found = [_face_in_source(box, back, (sx, sy), roll) for box in boxes]
                # largest first; ties broken by position so the order never depends on OpenCV's threads
                return sorted(found, key=lambda f: (-f.w * f.h, -f.score, f.y, f.x))
    return []


def _detection_gray(image: Image.Image) -> tuple[np.ndarray, tuple[float, float]]:
    """Equalised grayscale at most DETECT_MAX_SIDE long, and the factors (x, y) back to the image's pixels."""
    width, height = image.size
    shrink = max(width, height) / DETECT_MAX_SIDE
    if shrink > 1.0:
        size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    gray = np.asarray(image.convert("L"))
    return cv2.equalizeHist(gray), (width / gray.shape[1], height / gray.shape[0])


def _turned(gray: np.ndarray, roll: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned so a head rolled by `roll` stands upright (canvas grown to keep every corner), and the
    affine [2, 3] from the turned image's pixels back to the input's."""
    if roll == 0.0:
        return gray, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    height, width = gray.shape
    forward = cv2.getRotationMatrix2D((width / 2, height / 2), -roll, 1.0)  # cv2: positive = counter-clockwise
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64) @ forward[:, :2].T
    corners += forward[:, 2]
    low, high = corners.min(0), corners.max(0)
    forward[:, 2] -= low
    size = tuple(int(v) for v in np.ceil(high - low))
    turned = cv2.warpAffine(gray, forward, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return turned, cv2.invertAffineTransform(forward)


def _face_in_source(box: tuple, back: np.ndarray, scale: tuple[float, float], roll: float) -> FaceBox:
    """A box found in the turned, shrunk copy → the image's pixels (same centre and size, axis-aligned)."""
    x, y, w, h, score = box
    cx, cy = back @ np.array([x + w / 2, y + h / 2, 1.0])
    w, h = w * scale[0], h * scale[1]
    return FaceBox(float(cx * scale[0] - w / 2), float(cy * scale[1] - h / 2), float(w), float(h), score, roll)


def _run_cascade(gray: np.ndarray, name: str, min_side: int, min_neighbours: int) -> list[tuple]:
    base, mirror = name.removesuffix("+mirror"), name.endswith("+mirror")
    boxes = _hits(cascade(base), gray, min_side, min_neighbours)
    if mirror:
        width = gray.shape[1]
        flipped = _hits(cascade(base), np.ascontiguousarray(gray[:, ::-1]), min_side, min_neighbours)
        boxes += [(width - x - w, y, w, h, score) for x, y, w, h, score in flipped]
    return boxes


def _hits(classifier: cv2.CascadeClassifier, gray: np.ndarray, min_side: int, min_neighbours: int) -> list[tuple]:
    rects, neighbours = classifier.detectMultiScale2(gray, scaleFactor=SCALE_STEP, minNeighbors=min_neighbours,
                                                     minSize=(min_side, min_side))
    return [(*map(int, r), int(n)) for r, n in zip(rects, neighbours)]


# ----------------------------------------------------------------------------------------------- roll
def estimate_roll(image: Image.Image, face: FaceBox) -> Roll | None:
    """The head's roll from the two eyes found in the face of an RGB image, or None when no plausible
    pair is found (the caller then keeps the detector's angle: a wrong angle is worse than none)."""
    crop = CropBox(face.x, face.y, face.size, face.angle_degrees)  # the face, turned upright
    upright = cut_square(image, crop, EYE_FACE_WIDTH)
    top, bottom = round(0.1 * EYE_FACE_WIDTH), round(0.65 * EYE_FACE_WIDTH)  # the eyes' band, with room for roll
    gray = np.ascontiguousarray(cv2.cvtColor(upright[top:bottom, :, :3], cv2.COLOR_RGB2GRAY))
    for name in EYE_CASCADES:
        pair = _best_pair(_eye_hits(gray, name), EYE_FACE_WIDTH, EYE_FACE_WIDTH / 2)
        if pair is not None:
            left, right = apply(output_to_source(crop, EYE_FACE_WIDTH), np.array(pair) + [0.0, top])
            # the right eye higher on screen (smaller y) = head turned counter-clockwise = positive angle
            angle = math.degrees(math.atan2(left[1] - right[1], right[0] - left[0]))
            return Roll(angle, (tuple(map(float, left)), tuple(map(float, right))))
    return None


def _eye_hits(gray: np.ndarray, name: str) -> list[tuple[float, float, float]]:
    """(centre x, centre y, side) of each eye candidate."""
    side = round(0.1 * EYE_FACE_WIDTH)
    # fine 5 % scale steps: with 10 % the eyes behind grace_hopper's glasses are missed in 4 of 8 turned copies
    rects = cascade(name).detectMultiScale(gray, scaleFactor=1.05, minNeighbors=3, minSize=(side, side),
                                           maxSize=(4 * side, 4 * side))
    return [(x + w / 2, y + h / 2, float(w)) for x, y, w, h in (map(int, r) for r in rects)]


def _best_pair(hits, face_width: float, face_cx: float):
    """The most symmetric plausible (left, right) eye pair: one each side of the face centre, 25–65 % of the
    face width apart, similar sizes, eye line within ±MAX_ROLL. None if there is none."""
    best, best_cost = None, math.inf
    for lx, ly, ls in hits:
        for rx, ry, rs in hits:
            if not (lx < face_cx < rx):
                continue
            distance = math.hypot(rx - lx, ry - ly)
            angle = math.degrees(math.atan2(ly - ry, rx - lx))
            ratio = max(ls, rs) / min(ls, rs)
            if not (0.25 <= distance / face_width <= 0.65 and abs(angle) <= MAX_ROLL and ratio <= 1.6):
                continue
            cost = abs((lx + rx) / 2 - face_cx) / face_width + math.log(ratio)
            if cost < best_cost:
                best, best_cost = ((lx, ly), (rx, ry)), cost
    return best


__all__ = ["FACE_CASCADES", "FaceBox", "Roll", "cascade", "detect_faces", "estimate_roll"]
