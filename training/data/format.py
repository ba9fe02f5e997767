"""The on-disk dataset format (see README "Dataset format").

    DATASET/
      index.json                  {"format": "rodinhd-dataset", "version": 1, "avatars": [ids], "source": {...}}
      synth_config.json           the generator config (synthetic data only)
      <avatar id>/
        transforms.json           training views, NeRF-synthetic convention (engine.cameras)
        transforms_test.json      held-out views (optional), same convention
        images/NNNN.png           RGBA training views
        test/NNNN.png             RGBA held-out views
        portrait.png              the frontal condition image (the same picture as training view 0)
        attributes.json           what the avatar is made of (synthetic data; free-form for imports)
        caption.txt               one sentence describing the avatar

`frames[].file_path` is relative to the avatar folder and includes the extension.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.io import atomic_write_json, read_json

FORMAT_NAME = "rodinhd-dataset"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
TRAIN_TRANSFORMS = "transforms.json"
TEST_TRANSFORMS = "transforms_test.json"
PORTRAIT_FILE = "portrait.png"
ATTRIBUTES_FILE = "attributes.json"
CAPTION_FILE = "caption.txt"
TRAIN_DIR = "images"
TEST_DIR = "test"
TEMP_PREFIX = ".partial-"  # folders being written; renamed to their final name only when complete


@dataclass(frozen=True)
class Frame:
    file_path: str  # relative to the avatar folder
    c2w: np.ndarray  # [4, 4] camera-to-world, OpenGL camera axes


@dataclass(frozen=True)
class ViewSet:
    camera_angle_x: float  # horizontal field of view, radians
    frames: list[Frame]


def frame_name(index: int) -> str:
    return f"{index:04d}.png"


def write_transforms(path: Path, views: ViewSet, extra: dict[str, Any] | None = None) -> None:
    data = {
        "camera_angle_x": float(views.camera_angle_x),
        **(extra or {}),
        "frames": [
            {"file_path": f.file_path, "transform_matrix": np.asarray(f.c2w, dtype=float).round(8).tolist()}
            for f in views.frames
        ],
    }
    atomic_write_json(path, data)


def read_transforms(path: Path) -> ViewSet:
    """Parse a transforms file in our convention; raises UserError naming the file and the problem."""
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or "camera_angle_x" not in data or not isinstance(data.get("frames"), list):
        raise UserError(f"{path}: needs 'camera_angle_x' and a 'frames' list")
    frames = []
    for i, item in enumerate(data["frames"]):
        try:
            c2w = np.asarray(item["transform_matrix"], dtype=np.float64)
            file_path = str(item["file_path"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: frame {i} needs 'file_path' and a 4x4 'transform_matrix'") from exc
        if c2w.shape != (4, 4):
            raise UserError(f"{path}: frame {i} transform_matrix has shape {list(c2w.shape)}, expected [4, 4]")
        frames.append(Frame(file_path, c2w))
    return ViewSet(float(data["camera_angle_x"]), frames)


def write_index(root: Path, avatar_ids: list[str], source: dict[str, Any]) -> None:
    atomic_write_json(
        Path(root) / INDEX_FILE,
        {"format": FORMAT_NAME, "version": FORMAT_VERSION, "avatars": sorted(avatar_ids), "source": source},
    )


def read_index(root: Path) -> dict[str, Any]:
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise UserError(f"{root}: no {INDEX_FILE}; is this a dataset folder? (make one with 'rodinhd synth' "
                        "or 'rodinhd data import')")
    try:
        index = read_json(path)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME or not isinstance(index.get("avatars"), list):
        raise UserError(f"{path}: not a {FORMAT_NAME} index (needs 'format': '{FORMAT_NAME}' and an 'avatars' list)")
    return index


def read_attributes(folder: Path) -> dict[str, Any] | None:
    """A synthetic avatar's attributes.json, or None when the avatar has none (imported data)."""
    path = Path(folder) / ATTRIBUTES_FILE
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read attributes: {exc}") from exc


def avatar_dirs(root: Path) -> list[Path]:
    """The avatar folders listed in the dataset's index, in order."""
    return [Path(root) / str(name) for name in read_index(root)["avatars"]]
