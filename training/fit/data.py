"""One avatar's views in memory, as training rays: images composited on white, cameras, and the occupancy
grid carved from the alpha masks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.errors import UserError
from engine.render import OccupancyGrid, Rays, pixel_rays
from training.data.format import TEST_TRANSFORMS, TRAIN_TRANSFORMS, read_transforms


@dataclass
class AvatarViews:
    """rgba [V, H, W, 4] uint8 (kept small: stage 1 holds many avatars); c2w [V, 4, 4]; fov in radians."""

    name: str
    rgba: torch.Tensor
    c2w: torch.Tensor
    camera_angle_x: float

    @property
    def size(self) -> tuple[int, int]:
        return self.rgba.shape[1], self.rgba.shape[2]

    def on_white(self, index=slice(None)) -> torch.Tensor:
        """Colour composited over white (the background the renderer uses), float in [0, 1], [..., 3]."""
        rgba = self.rgba[index].float() / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)

    def occupancy(self, size: int) -> OccupancyGrid | None:
        if size <= 0:
            return None
        return OccupancyGrid.from_masks(self.c2w, self.camera_angle_x, self.rgba[..., 3].float() / 255.0, size)

    def to(self, device) -> "AvatarViews":
        return AvatarViews(self.name, self.rgba.to(device), self.c2w.to(device), self.camera_angle_x)


def load_views(folder: Path, split: str = "train", limit: int | None = None, resolution: int | None = None,
               ) -> AvatarViews:
    """Read an avatar folder's split ('train' or 'test'); optionally the first `limit` views, resized."""
    folder = Path(folder)
    views = read_transforms(folder / (TRAIN_TRANSFORMS if split == "train" else TEST_TRANSFORMS))
    frames = views.frames[:limit] if limit else views.frames
    if not frames:
        raise UserError(f"{folder}: the {split} split has no views")
    images = []
    for frame in frames:
        try:
            image = Image.open(folder / frame.file_path).convert("RGBA")
        except (OSError, ValueError) as exc:
            raise UserError(f"{folder / frame.file_path}: cannot read image ({exc})") from exc
        if resolution and image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.Resampling.BOX)
        images.append(np.asarray(image))
    if len({im.shape for im in images}) != 1:
        raise UserError(f"{folder}: the {split} images do not all have the same size")
    rgba = torch.from_numpy(np.stack(images))
    c2w = torch.tensor(np.stack([f.c2w for f in frames]), dtype=torch.float32)
    return AvatarViews(folder.name, rgba, c2w, views.camera_angle_x)


def load_eval_views(folder: Path, limit: int, resolution: int | None = None) -> AvatarViews:
    """Held-out views for evaluation: the test split, or the first training views when there is none."""
    split = "test" if (Path(folder) / TEST_TRANSFORMS).is_file() else "train"
    return load_views(folder, split, limit=limit, resolution=resolution)


class RaySampler:
    """Random rays over all views of an avatar, with their target colour on white."""

    def __init__(self, views: AvatarViews, generator: torch.Generator) -> None:
        self.views = views
        self.generator = generator

    def sample(self, count: int) -> tuple[Rays, torch.Tensor]:
        v_count, height, width = self.views.rgba.shape[:3]
        g = self.generator
        view = torch.randint(0, v_count, (count,), generator=g)
        row = torch.randint(0, height, (count,), generator=g)
        col = torch.randint(0, width, (count,), generator=g)
        device = self.views.rgba.device
        view, row, col = view.to(device), row.to(device), col.to(device)
        rays = pixel_rays(self.views.c2w[view], self.views.camera_angle_x, width, height, col.float() + 0.5,
                          row.float() + 0.5)
        return rays, self.views.on_white((view, row, col))
