"""`check_dataset`: find every problem in a dataset folder (format: training.data.format), not just the first.

Image headers (format, mode, size) are read for every file; pixels are decoded fully (corrupt data, empty alpha)
for the portrait and a few frames per split, or for every image with `full=True`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.cameras import is_rigid
from engine.errors import UserError
from engine.io import read_json
from training.data.format import (
    ATTRIBUTES_FILE, CAPTION_FILE, INDEX_FILE, PORTRAIT_FILE, TEMP_PREFIX, TEST_TRANSFORMS, TRAIN_TRANSFORMS,
    read_index,
)


SAMPLE_PER_SPLIT = 4  # frames per split whose pixels are decoded when not `full`


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


class _Report(list):
    """A list of Problems with shorthands."""

    def error(self, path: Path, message: str) -> None:
        self.append(Problem("error", path, message))

    def warning(self, path: Path, message: str) -> None:
        self.append(Problem("warning", path, message))


def _avatar_ids(root: Path, report: _Report) -> list[str]:
    """Avatar ids from index.json; without a usable index, the sub-folders that hold a transforms.json."""
    index = root / INDEX_FILE
    for leftover in sorted(root.glob(f"{TEMP_PREFIX}*")):
        report.warning(leftover, "temporary folder left by an interrupted import; delete it")
    on_disk = sorted(p.name for p in root.iterdir() if (p / TRAIN_TRANSFORMS).is_file())
    if not index.is_file():
        report.error(index, "missing (make one with 'rodinhd synth' or 'rodinhd data import')")
        return on_disk
    try:
        read_json(index)  # parse first: its error reads better than read_index's wrapped one
        ids = [str(a) for a in read_index(root)["avatars"]]
    except (OSError, ValueError) as exc:
        report.error(index, f"cannot be parsed: {str(exc).replace(f'{index}: ', '')}")
        return on_disk
    except UserError as exc:
        report.error(index, str(exc).replace(f"{index}: ", ""))
        return on_disk
    if not ids:
        report.error(index, "lists no avatars")
    for dup in sorted({a for a in ids if ids.count(a) > 1}):
        report.error(index, f"avatar {dup!r} is listed more than once")
    return list(dict.fromkeys(ids))


def _load_transforms(path: Path, report: _Report, required: bool) -> list[tuple[int, str]] | None:
    """Check one transforms file; returns [(frame index, file_path)] of frames that name a file, or None."""
    if not path.is_file():
        if required:
            report.error(path, "missing")
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        report.error(path, f"cannot be parsed: {exc}".replace(f"{path}: ", ""))
        return None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        report.error(path, "missing key 'frames' (a list)")
        return None
    fov = data.get("camera_angle_x")
    if fov is None:
        report.error(path, "missing key 'camera_angle_x'")
    elif not (isinstance(fov, (int, float)) and 0.0 < fov < math.pi):
        report.error(path, f"camera_angle_x {fov!r} is not in (0, pi) radians")
    if not data["frames"]:
        report.error(path, "has no frames")
    named = []
    for i, item in enumerate(data["frames"]):
        if not isinstance(item, dict) or "file_path" not in item:
            report.error(path, f"frame {i}: missing key 'file_path'")
        else:
            named.append((i, str(item["file_path"])))
        if isinstance(item, dict):
            _check_matrix(item.get("transform_matrix"), path, i, report)
    return named


def _check_matrix(value: object, path: Path, i: int, report: _Report) -> None:
    if value is None:
        report.error(path, f"frame {i}: missing key 'transform_matrix'")
        return
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        report.error(path, f"frame {i}: transform_matrix is not a 4x4 matrix of numbers")
        return
    if m.shape != (4, 4):
        report.error(path, f"frame {i}: transform_matrix has shape {list(m.shape)}, expected [4, 4]")
    elif not np.all(np.isfinite(m)):
        report.error(path, f"frame {i}: transform_matrix has non-finite values")
    elif not is_rigid(m):
        report.error(path, f"frame {i}: transform_matrix is not rigid (rotation + translation)")


def _check_png(path: Path, report: _Report, decode: bool) -> tuple[int, int] | None:
    """Header checks always, pixel checks if `decode`. Returns the image size, or None if unreadable."""
    if not path.is_file():
        report.error(path, "missing")
        return None
    try:
        with Image.open(path) as img:
            size, mode, fmt = img.size, img.mode, img.format
            if decode:
                img.load()
                alpha = np.asarray(img.getchannel("A")) if mode == "RGBA" else None
    except (OSError, SyntaxError, ValueError) as exc:
        report.error(path, f"not a readable PNG ({exc})")
        return None
    if fmt != "PNG":
        report.error(path, f"is a {fmt} file, expected PNG")
    if mode != "RGBA":
        report.warning(path, f"image mode {mode}, expected RGBA")
    elif decode and not alpha.any():
        report.error(path, "alpha channel is empty (fully transparent)")
    return size


Sized = dict[Path, tuple[Path, tuple[int, int] | None]]  # resolved path -> (path as written, size or None)


def _check_frames(folder: Path, frames: list[tuple[int, str]], where: Path, report: _Report, full: bool) -> Sized:
    """Check the images a transforms file names."""
    seen: Sized = {}
    inside = folder.resolve()
    sample = set(np.linspace(0, len(frames) - 1, min(SAMPLE_PER_SPLIT, len(frames))).round().astype(int).tolist())
    for k, (i, rel) in enumerate(frames):
        path = (folder / rel).resolve()
        if Path(rel).is_absolute() or inside not in path.parents:
            report.error(where, f"frame {i}: file_path {rel!r} points outside the avatar folder")
            continue
        if path in seen:
            report.error(where, f"frame {i}: file_path {rel!r} is used by more than one frame")
            continue
        seen[path] = (folder / rel, _check_png(folder / rel, report, decode=full or k in sample))
    return seen


def _check_sizes(images: Sized, report: _Report) -> None:
    """Every view of an avatar must have the same size: report the odd ones against the most common size."""
    sizes = [s for _, s in images.values() if s is not None]
    if not sizes:
        return
    common = max(sorted(set(sizes)), key=sizes.count)
    for path, size in images.values():
        if size is not None and size != common:
            report.error(path, f"size {size[0]}x{size[1]} differs from the other frames ({common[0]}x{common[1]})")


def check_avatar(folder: Path, report: _Report, full: bool = False) -> None:
    """Append every problem of one avatar folder to `report`."""
    if not folder.is_dir():
        report.error(folder, "avatar listed in index.json but its folder is missing")
        return
    train = _load_transforms(folder / TRAIN_TRANSFORMS, report, required=True)
    test = _load_transforms(folder / TEST_TRANSFORMS, report, required=False)
    train_images = _check_frames(folder, train or [], folder / TRAIN_TRANSFORMS, report, full)
    test_images = _check_frames(folder, test or [], folder / TEST_TRANSFORMS, report, full)
    for path in sorted(set(train_images) & set(test_images)):
        shown = path.relative_to(folder.resolve())
        report.error(folder / TEST_TRANSFORMS, f"test frame uses training image {shown} (held-out views leak "
                                               "into training)")
    _check_sizes({**train_images, **test_images}, report)
    _check_png(folder / PORTRAIT_FILE, report, decode=True)
    _check_metadata(folder, report)


def _check_metadata(folder: Path, report: _Report) -> None:
    """attributes.json and caption.txt are optional for training: warnings only."""
    attributes = folder / ATTRIBUTES_FILE
    if not attributes.is_file():
        report.warning(attributes, "missing")
    else:
        try:
            read_json(attributes)
        except (OSError, ValueError) as exc:
            report.warning(attributes, f"cannot be parsed: {exc}".replace(f"{attributes}: ", ""))
    if not (folder / CAPTION_FILE).is_file():
        report.warning(folder / CAPTION_FILE, "missing")


def check_dataset(root: Path, full: bool = False) -> list[Problem]:
    """Every problem found in the dataset at `root`, in a stable order. Raises UserError if `root` is no folder."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    report = _Report()
    for avatar_id in _avatar_ids(root, report):
        check_avatar(root / avatar_id, report, full)
    return list(report)
