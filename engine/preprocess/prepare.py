"""`prepare_portrait`: an in-the-wild photo → the model's input in the training framing (RGBA, transparent
background): find the face, roll it upright from the eyes, cut the square that puts the face where the training
faces are, matte the background."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.errors import UserError
from engine.portrait import PortraitSource, check_visible_content, open_portrait, over_white
from engine.preprocess.face import FACE_CASCADES, FaceBox, Roll, detect_faces, estimate_roll
from engine.preprocess.framing import CropBox, centre_square, crop_for_face, cut_square
from engine.preprocess.matte import grabcut_alpha

DETECTOR = "opencv-haar:" + "+".join(FACE_CASCADES)


class NoFaceFound(UserError):
    """Face detection found no face; the message says how to go on (a hand-made crop, or no detection)."""


@dataclass
class PreparedPortrait:
    image: Image.Image
    """RGBA size×size: the model input in the training framing, transparent background."""
    source_size: tuple[int, int]
    """(width, height) of the source, EXIF orientation applied."""
    face: FaceBox | None
    """The face used (the largest found), in source pixels; None without detection."""
    crop: CropBox
    """The square actually cut, in source pixels (it may reach past the image: that part is transparent)."""
    faces_found: int = 0
    crop_from: str = "face"
    """"face" (detected), "manual" (given), "centre" (no detection: the centre square) or "as_is" (the source was
    already in the training form: see `already_prepared`)."""
    roll: Roll | None = None
    """The eye line the angle came from; None when the eyes were not found reliably (or not looked for)."""
    matte: str = "none"
    """"grabcut", "source_alpha" (the source already had transparency) or "none"."""
    timings: dict = field(default_factory=dict)

    def record(self) -> dict:
        """JSON-able summary for avatar.json."""
        return {
            "detector": DETECTOR if self.crop_from == "face" else None,
            "faces_found": self.faces_found,
            "face": self.face.to_dict() if self.face else None,
            "crop_from": self.crop_from,
            "crop": self.crop.to_dict(),
            "angle_degrees": round(self.crop.angle_degrees, 2),
            "roll_from": "eyes" if self.roll else ("detector" if self.face and self.crop.angle_degrees else None),
            "eyes": self.roll.to_dict()["eyes"] if self.roll else None,
            "matte": self.matte,
            "source_size": list(self.source_size),
            "size": self.image.width,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def prepare_portrait(source: PortraitSource, *, detect: bool = True, align: bool = True, matte: bool = True,
                     crop: CropBox | None = None, size: int = 256) -> PreparedPortrait:
    """Source (path, PIL image or uint8 array, as `load_portrait` takes; the same UserErrors for bad files) →
    `PreparedPortrait`. `crop` is used as given; otherwise the largest face is framed like the training
    portraits (`NoFaceFound` when there is none), or with `detect=False` the centre square is cut. A source
    already in the training form (`already_prepared`) is taken whole. A source with its own transparency keeps
    it as the matte."""
    clock = _Clock()
    image, name = open_portrait(source)  # full resolution: crops and faces are in the source's pixels
    check_visible_content(image, name)  # before detection: "no face found" would point at ways out that fail
    clock.lap("open_s")
    if crop is not None:
        found = _Found(crop, "manual")
    elif detect and already_prepared(image):
        found = _Found(centre_square(*image.size), "as_is")
    elif detect:
        found = _frame_face(image, name, align, clock)
    else:
        found = _Found(centre_square(*image.size), "centre")
    found.crop.check_overlaps(*image.size, name)
    pixels = cut_square(image, found.crop, size)
    clock.lap("crop_s")
    method = _matte_method(image, matte)
    if method == "grabcut":
        alpha = grabcut_alpha(pixels, framed=found.face is not None)
        pixels[..., 3] = np.rint(alpha * 255.0).astype(np.uint8)
        clock.lap("matte_s")
    prepared = Image.fromarray(pixels, "RGBA")
    check_visible_content(prepared, name, *_what_was_cut(found.crop_from, method))
    return PreparedPortrait(prepared, image.size, found.face, found.crop, found.faces,
                            found.crop_from, found.roll, method, clock.timings())


@dataclass
class _Found:
    crop: CropBox
    crop_from: str
    face: FaceBox | None = None
    faces: int = 0
    roll: Roll | None = None


def _frame_face(image: Image.Image, name: str, align: bool, clock: _Clock) -> _Found:
    """Detect (the largest face), estimate its roll, and place it like the training faces."""
    rgb = over_white(image)
    faces = detect_faces(rgb)
    clock.lap("detect_s")
    if not faces:
        raise NoFaceFound(f"{name}: no face found. Set the crop by hand (studio: Crop…; CLI: --crop X,Y,SIZE) "
                          "or turn face detection off (CLI: --preprocess off)")
    face = faces[0]
    roll = estimate_roll(rgb, face) if align else None
    clock.lap("align_s")
    # eyes not found: the detector's own angle (non-zero only when just a turned copy showed the face)
    angle = roll.angle_degrees if roll else (face.angle_degrees if align else 0.0)
    return _Found(crop_for_face(face.centre, face.size, angle), "face", face, len(faces), roll)


def _what_was_cut(crop_from: str, matte: str) -> tuple[str, str]:
    """(how the message names the prepared square, what to change), so the user knows which step to undo."""
    if crop_from == "as_is":
        return "the portrait", ""
    hint = "; set another crop (studio: Crop…; CLI: --crop X,Y,SIZE)"
    if matte == "grabcut":
        return ("the portrait after the crop and background removal",
                hint + " or turn background removal off (CLI: --preprocess off)")
    return "the portrait after the crop", hint


def already_prepared(image: Image.Image) -> bool:
    """A square RGBA image with transparent corners is already in the training form: a training render, or an
    image this module made (its corners are always cleared). It is used as it is: re-detecting would only
    re-crop it by a pixel or two, and fails on a third of the synthetic faces."""
    if image.mode != "RGBA" or image.width != image.height:
        return False
    last = image.width - 1
    return all(image.getpixel(corner)[3] == 0 for corner in ((0, 0), (last, 0), (0, last), (last, last)))


def _matte_method(image: Image.Image, matte: bool) -> str:
    """A source that already has transparency keeps its own matte (e.g. a render); GrabCut otherwise."""
    if not matte:
        return "none"
    if image.mode == "RGBA" and image.getextrema()[3][0] < 255:
        return "source_alpha"
    return "grabcut"


class _Clock:
    """Seconds per stage, for the record."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    def timings(self) -> dict[str, float]:
        return {**self.laps, "total_s": sum(self.laps.values())}


__all__ = ["DETECTOR", "NoFaceFound", "PreparedPortrait", "already_prepared", "prepare_portrait"]
