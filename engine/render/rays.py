"""Camera rays in the NeRF-synthetic convention (engine.cameras) and their intersection with the bound box."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.cameras import focal_from_fov


@dataclass
class Rays:
    origins: torch.Tensor  # [N, 3]
    directions: torch.Tensor  # [N, 3], unit length

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, index) -> "Rays":
        return Rays(self.origins[index], self.directions[index])


def pixel_rays(c2w: torch.Tensor, camera_angle_x: float, width: int, height: int, u: torch.Tensor,
               v: torch.Tensor) -> Rays:
    """Rays through pixel coordinates u (right), v (down) — pixel centres are at +0.5.

    `c2w` [4, 4] or per-ray [N, 4, 4]; u, v [N] (float, already including the +0.5 for centres).
    """
    focal = focal_from_fov(camera_angle_x, width)
    cam = torch.stack([(u - width / 2) / focal, -(v - height / 2) / focal, -torch.ones_like(u)], -1)
    rot = c2w[..., :3, :3]
    directions = (rot @ cam.unsqueeze(-1)).squeeze(-1) if rot.dim() == 3 else cam @ rot.T
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = c2w[..., :3, 3].expand_as(directions)
    return Rays(origins.contiguous(), directions)


def camera_rays(c2w: torch.Tensor, camera_angle_x: float, width: int, height: int) -> Rays:
    """All rays of an image, row-major (top row first) → N = H·W."""
    v, u = torch.meshgrid(torch.arange(height, dtype=c2w.dtype, device=c2w.device) + 0.5,
                          torch.arange(width, dtype=c2w.dtype, device=c2w.device) + 0.5, indexing="ij")
    return pixel_rays(c2w, camera_angle_x, width, height, u.reshape(-1), v.reshape(-1))


def intersect_box(rays: Rays, bound: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry/exit distances of rays with the cube [-bound, bound]³ → (near [N], far [N], hit [N] bool)."""
    return intersect_aabb(rays, torch.full((3,), -bound), torch.full((3,), bound))


def intersect_aabb(rays: Rays, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry/exit distances of rays with the box [lo, hi] (each [3]) → (near [N], far [N], hit [N] bool)."""
    lo, hi = lo.to(rays.origins), hi.to(rays.origins)
    inv = 1.0 / torch.where(rays.directions.abs() < 1e-9, torch.full_like(rays.directions, 1e-9), rays.directions)
    t0 = (lo - rays.origins) * inv
    t1 = (hi - rays.origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far, far > near
