"""An occupancy grid over the bound box: samples in empty cells are never evaluated (empty-space skipping).

Two ways to build one: carve the visual hull from the training views' alpha masks (fitting: exact and free),
or threshold the density of a triplane (generated avatars, where no images exist).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from engine.cameras import focal_from_fov

_VIEWS_AT_ONCE = 8


@dataclass
class OccupancyGrid:
    occupied: torch.Tensor  # [G, G, G] bool, indexed [ix, iy, iz]
    bound: float = 1.0

    @property
    def size(self) -> int:
        return self.occupied.shape[0]

    @classmethod
    def full(cls, size: int = 64, bound: float = 1.0, device="cpu") -> "OccupancyGrid":
        return cls(torch.ones(size, size, size, dtype=torch.bool, device=device), bound)

    def cell_centres(self) -> torch.Tensor:
        """[G³, 3] world positions of the cell centres, in [ix, iy, iz] order."""
        g = self.size
        axis = (torch.arange(g, device=self.occupied.device, dtype=torch.float32) + 0.5) / g * 2 - 1
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
        return grid.reshape(-1, 3) * self.bound

    def lookup(self, points: torch.Tensor) -> torch.Tensor:
        """Occupancy of points [..., 3] → bool [...] (outside the box: False)."""
        idx, inside = _cells(points, self.size, self.bound)
        return self.occupied[idx[..., 0], idx[..., 1], idx[..., 2]] & inside

    def dilate(self, cells: int = 1) -> "OccupancyGrid":
        grown = F.max_pool3d(self.occupied[None, None].float(), 2 * cells + 1, stride=1, padding=cells)[0, 0]
        return OccupancyGrid(grown > 0, self.bound)

    @property
    def fraction(self) -> float:
        return float(self.occupied.float().mean())

    @classmethod
    @torch.no_grad()
    def from_masks(cls, c2ws: torch.Tensor, camera_angle_x: float, alphas: torch.Tensor, size: int = 64,
                   bound: float = 1.0, threshold: float = 0.01, dilate: int = 1) -> "OccupancyGrid":
        """Visual hull: a cell stays occupied only if every view sees it over (dilated) non-empty alpha.

        c2ws [V, 4, 4]; alphas [V, H, W] in [0, 1]. Cells projecting outside a view are not carved by it.
        """
        grid = cls.full(size, bound, alphas.device)
        occupied = torch.ones(size ** 3, dtype=torch.bool, device=alphas.device)
        height, width = alphas.shape[-2:]
        focal = focal_from_fov(camera_angle_x, width)
        # a pixel of slack: grow every mask by the footprint of half a cell
        masks = F.max_pool2d((alphas > threshold).float()[:, None], 5, stride=1, padding=2)[:, 0] > 0
        centres = grid.cell_centres()
        w2cs = torch.linalg.inv(c2ws)
        for first in range(0, len(c2ws), _VIEWS_AT_ONCE):  # a few views at a time: one matmul, bounded memory
            w2c, mask = w2cs[first:first + _VIEWS_AT_ONCE], masks[first:first + _VIEWS_AT_ONCE]
            cam = torch.einsum("vij,nj->vni", w2c[:, :3, :3], centres) + w2c[:, None, :3, 3]
            depth = -cam[..., 2]
            u = (width / 2 + focal * cam[..., 0] / depth).floor().long()
            v = (height / 2 - focal * cam[..., 1] / depth).floor().long()
            visible = (depth > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
            view = torch.arange(len(mask), device=mask.device)[:, None].expand_as(u)
            seen = mask[view, v.clamp(0, height - 1), u.clamp(0, width - 1)]
            occupied &= (seen | ~visible).all(0)
        return cls(occupied.reshape(size, size, size), bound).dilate(dilate)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The box [lo, hi] (each [3], world units) around every occupied cell; None when nothing is occupied."""
        cells = self.occupied.nonzero()
        if not len(cells):
            return None
        cell = 2.0 * self.bound / self.size
        return cells.amin(0) * cell - self.bound, (cells.amax(0) + 1) * cell - self.bound

    @classmethod
    @torch.no_grad()
    def from_density(cls, density_fn: Callable[[torch.Tensor], torch.Tensor], size: int = 64, bound: float = 1.0,
                     threshold: float = 0.5, samples_per_cell: int = 2, device="cpu", seed: int = 0,
                     ) -> "OccupancyGrid":
        """Cells whose maximum density over a few jittered samples exceeds `threshold` (then dilated by one)."""
        grid = cls.full(size, bound, device)
        centres = grid.cell_centres()
        gen = torch.Generator(device="cpu").manual_seed(seed)
        best = torch.zeros(len(centres), device=device)
        for _ in range(samples_per_cell):
            jitter = (torch.rand(centres.shape, generator=gen) - 0.5).to(device) * (2 * bound / size)
            for chunk in torch.split(torch.arange(len(centres), device=device), 65536):
                best[chunk] = torch.maximum(best[chunk], density_fn(centres[chunk] + jitter[chunk]))
        return cls((best > threshold).reshape(size, size, size), bound).dilate(1)


def _cells(points: torch.Tensor, size: int, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell indices [..., 3] of points (clamped into the grid) and whether each point lies inside the box."""
    idx = ((points / bound + 1) * 0.5 * size).floor().long()
    inside = ((idx >= 0) & (idx < size)).all(-1)
    return idx.clamp(0, size - 1), inside


@dataclass
class OccupancyStack:
    """The occupancy grids of several avatars (same size and bound), looked up per point by avatar index."""

    occupied: torch.Tensor  # [K, G, G, G] bool
    bound: float = 1.0

    @classmethod
    def of(cls, grids: list[OccupancyGrid]) -> "OccupancyStack":
        if len({(g.size, g.bound) for g in grids}) != 1:
            raise ValueError("stacked occupancy grids must share their size and bound")
        return cls(torch.stack([g.occupied for g in grids]), grids[0].bound)

    def lookup(self, points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Occupancy of points [..., 3] in the grids `index` (broadcast against points[..., 0]) → bool [...]."""
        idx, inside = _cells(points, self.occupied.shape[1], self.bound)
        return self.occupied[index.expand_as(inside), idx[..., 0], idx[..., 1], idx[..., 2]] & inside
