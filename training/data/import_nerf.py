"""Importer for NeRF-synthetic scene folders (one scene = one avatar).

Two styles are read:
- Blender: `transforms_train.json`, `transforms_val.json`, `transforms_test.json`; `file_path` like
  "./train/r_0" (no extension; ".png" is tried); `camera_angle_x` in radians.
- instant-ngp: a single `transforms.json`; the field of view may be given as `fl_x` (pixels) + `w` instead of
  `camera_angle_x`; images may be RGB JPG/PNG (converted to RGBA, alpha 255, with a warning); `aabb_scale` is kept.
Train frames become images/NNNN.png; test frames (val frames if there is no test split) become test/NNNN.png.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from engine.cameras import fov_from_focal
from engine.errors import UserError
from engine.io import read_json
from training.data.import_common import SourceFrame, SourceViews, check_fov, convert_pose, write_avatar

BLENDER_SPLITS = {"train": "transforms_train.json", "val": "transforms_val.json", "test": "transforms_test.json"}
NGP_FILE = "transforms.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
OPTIONS = frozenset({"scale", "up", "portrait_frame"})  # keyword options of import_nerf


def is_nerf_scene(folder: Path) -> bool:
    return (folder / BLENDER_SPLITS["train"]).is_file() or (folder / NGP_FILE).is_file()


def _resolve_image(scene: Path, file_path: str, where: str) -> Path:
    """`file_path` relative to the scene; Blender omits the extension, so try the usual ones."""
    path = scene / file_path
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    raise UserError(f"{where}: image {file_path!r} not found (also tried adding .png/.jpg)")


def _fov(data: dict[str, Any], first_image: Path | None, where: str) -> float:
    """camera_angle_x, or derived from instant-ngp's `fl_x` and `w` (w read from the first image if absent)."""
    if "camera_angle_x" in data:
        return check_fov(data["camera_angle_x"], where)
    if "fl_x" not in data:
        raise UserError(f"{where}: needs 'camera_angle_x' or 'fl_x' (focal length in pixels)")
    width = data.get("w")
    if width is None and first_image is not None:
        with Image.open(first_image) as img:
            width = img.width
    if not width:
        raise UserError(f"{where}: 'fl_x' given without 'w' and no image to read the width from")
    return check_fov(fov_from_focal(float(data["fl_x"]), int(width)), where)


def read_split(scene: Path, name: str, scale: float, z_up: bool) -> tuple[SourceViews, dict[str, Any]]:
    """One transforms file → (SourceViews in our convention, the file's parsed JSON)."""
    path = scene / name
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise UserError(f"{path}: needs a 'frames' list")
    frames = []
    for i, item in enumerate(data["frames"]):
        where = f"{path} frame {i}"
        if not isinstance(item, dict) or "file_path" not in item or "transform_matrix" not in item:
            raise UserError(f"{where}: needs 'file_path' and 'transform_matrix'")
        image = _resolve_image(scene, str(item["file_path"]), where)
        frames.append(SourceFrame(image, convert_pose(item["transform_matrix"], scale, z_up, where)))
    fov = _fov(data, frames[0].image if frames else None, str(path))
    return SourceViews(fov, frames), data


def _ngp_warnings(data: dict[str, Any]) -> list[str]:
    """Intrinsics our convention cannot hold (square pixels, centred principal point) are dropped: say so."""
    warnings = []
    fl_x, fl_y = data.get("fl_x"), data.get("fl_y")
    if fl_x and fl_y and abs(fl_y - fl_x) > 1e-3 * fl_x:
        warnings.append(f"fl_y ({fl_y}) differs from fl_x ({fl_x}); imported with square pixels (fl_x)")
    for key, size in (("cx", "w"), ("cy", "h")):
        if key in data and size in data and abs(data[key] - data[size] / 2) > 1.0:
            warnings.append(f"principal point {key}={data[key]} is off-centre; imported as centred")
    return warnings


def _portrait_first(views: SourceViews, portrait_frame: int, where: str) -> SourceViews:
    """Move the chosen frame to position 0: the format says the portrait is training view 0."""
    if not 0 <= portrait_frame < len(views.frames):
        raise UserError(f"{where}: portrait frame {portrait_frame} out of range (it has {len(views.frames)} "
                        "training frames)")
    frames = list(views.frames)
    frames.insert(0, frames.pop(portrait_frame))
    return SourceViews(views.camera_angle_x, frames)


def import_nerf(src: Path, dest: Path, scale: float = 1.0, up: str = "y", portrait_frame: int = 0) -> list[str]:
    """Import one NeRF-synthetic scene folder `src` into the (empty) avatar folder `dest`. Returns warnings."""
    src, dest = Path(src), Path(dest)
    z_up = up == "z"
    extra, warnings = {}, []
    if (src / BLENDER_SPLITS["train"]).is_file():
        style = "blender"
        train, _ = read_split(src, BLENDER_SPLITS["train"], scale, z_up)
        test_name = next((BLENDER_SPLITS[s] for s in ("test", "val") if (src / BLENDER_SPLITS[s]).is_file()), None)
        test = read_split(src, test_name, scale, z_up)[0] if test_name else None
    else:
        style = "instant-ngp"
        train, data = read_split(src, NGP_FILE, scale, z_up)
        test = None
        warnings += _ngp_warnings(data)
        if "aabb_scale" in data:
            extra["aabb_scale"] = data["aabb_scale"]
    train = _portrait_first(train, portrait_frame, str(src))
    attributes = {
        "source": "nerf-synthetic",
        "style": style,
        "original_path": str(src.resolve()),
        "options": {"scale": scale, "up": up, "portrait_frame": portrait_frame},
        **extra,
    }
    return warnings + write_avatar(dest, train, test, attributes, caption=src.name, extra=extra)
