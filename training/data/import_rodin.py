"""Importer for the authors' RodinHD layout (one folder per avatar; see notes/official-code.md).

    <avatar>/img_proc_fg_000000.png   RGBA render of view 0 (the frontal portrait)
    <avatar>/metadata_000000.json     {"cameras": [{"resolution": [W, H], "focal_length": f, "sensor_width": s,
                                                    "transformation": 4x4 Blender camera-to-world}]}

Blender cameras already use OpenGL camera axes; the world is Z-up, so it is rotated to our Y-up (Blender's
front, -Y, becomes +Z). Translations are scaled like the official code: ÷23 then ×0.6 (`RODIN_SCALE`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from engine.cameras import fov_from_focal
from engine.errors import UserError
from engine.io import read_json
from training.data.import_common import SourceFrame, SourceViews, check_fov, convert_pose, write_avatar

RODIN_SCALE = 0.6 / 23.0
IMAGE_PATTERN = "img_proc_fg_{:06d}.png"
METADATA_RE = re.compile(r"^metadata_(\d{6})\.json$")
OPTIONS = frozenset({"scale", "test_every"})  # keyword options of import_rodin


def view_indices(folder: Path) -> list[int]:
    """Indices of the `metadata_%06d.json` files in `folder`, sorted."""
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := METADATA_RE.match(p.name)))


def is_rodin_avatar(folder: Path) -> bool:
    return folder.is_dir() and any(METADATA_RE.match(p.name) for p in folder.iterdir())


def read_view(folder: Path, index: int, scale: float) -> tuple[SourceFrame, float]:
    """One view → (SourceFrame in our convention, camera_angle_x in radians)."""
    path = folder / f"metadata_{index:06d}.json"
    try:
        cam = read_json(path)["cameras"][0]
        width = int(cam["resolution"][0])
        focal_px = float(cam["focal_length"]) / float(cam["sensor_width"]) * width
        matrix = cam["transformation"]
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    except (KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        raise UserError(f"{path}: needs cameras[0] with 'resolution' [W, H], 'focal_length', 'sensor_width' "
                        "and a 4x4 'transformation'") from exc
    fov = check_fov(fov_from_focal(focal_px, width), str(path))
    image = folder / IMAGE_PATTERN.format(index)
    if not image.is_file():
        raise UserError(f"{path}: its image {image.name} is missing")
    return SourceFrame(image, convert_pose(matrix, scale, True, str(path))), fov


def _views(frames: list[tuple[SourceFrame, float]], where: str) -> SourceViews:
    """Frames sharing one field of view (our transforms files hold a single camera_angle_x)."""
    fovs = [fov for _, fov in frames]
    if fovs and max(fovs) - min(fovs) > 1e-6:
        raise UserError(f"{where}: views have different fields of view ({min(fovs):.4f}..{max(fovs):.4f} rad); "
                        "a transforms file holds one camera_angle_x")
    return SourceViews(fovs[0] if fovs else 0.0, [f for f, _ in frames])


def _frontal_warning(c2w: np.ndarray) -> list[str]:
    """View 0 should sit on +Z in our world (frontal); say so if the rig put it elsewhere."""
    pos = c2w[:3, 3]
    norm = np.linalg.norm(pos)
    if norm > 0 and pos[2] / norm < 0.9:
        return [f"view 0 is at {np.round(pos, 3).tolist()}, not on the +Z axis: the avatar may not face +Z"]
    return []


def import_rodin(src: Path, dest: Path, scale: float = RODIN_SCALE, test_every: int = 0) -> list[str]:
    """Import one RodinHD avatar folder `src` into the (empty) avatar folder `dest`. Returns warnings.

    View 0 is the portrait and training frame 0; with `test_every` N > 0, views N, 2N, ... go to the test split.
    """
    src, dest = Path(src), Path(dest)
    indices = view_indices(src)
    if not indices:
        raise UserError(f"{src}: no metadata_%06d.json files")
    warnings = [] if indices[0] == 0 else [f"no view 0; using view {indices[0]} as the portrait"]
    train, test = [], []
    for rank, index in enumerate(indices):
        held_out = test_every > 0 and rank > 0 and rank % test_every == 0
        (test if held_out else train).append(read_view(src, index, scale))
    warnings += _frontal_warning(train[0][0].c2w)
    attributes: dict[str, Any] = {
        "source": "rodinhd",
        "original_path": str(src.resolve()),
        "options": {"scale": scale, "test_every": test_every},
        "views": len(indices),
    }
    test_views = _views(test, str(src)) if test else None
    return warnings + write_avatar(dest, _views(train, str(src)), test_views, attributes, caption="")
