"""Shoulders and chest (a lofted superellipse), and the extra geometry of each clothing cut.

Cloth uv = (arc length around the body, height), aux.x = angle around the body (0 = front centre), so the
cloth shader can draw patterns without stretching and cut necklines by angle and height.
"""
from __future__ import annotations

import numpy as np

from training.synth.attributes import Clothing
from training.synth.mesh import Mesh, grid_indices, merge, tubes, vertex_normals

BOTTOM_Y = -0.80
# (height, half-width x, half-depth z): chest → shoulders → trapezius → neck base.
PROFILE = np.array([
    [-0.80, 0.54, 0.235], [-0.60, 0.56, 0.245], [-0.45, 0.58, 0.25], [-0.34, 0.62, 0.235],
    [-0.27, 0.61, 0.215], [-0.215, 0.53, 0.19], [-0.175, 0.40, 0.165], [-0.145, 0.26, 0.14],
    [-0.125, 0.15, 0.12], [-0.115, 0.105, 0.105],
])
EXPONENT = 2.6  # superellipse: boxier than an ellipse, like a torso


class Torso:
    def __init__(self, shoulder_scale: float = 1.0) -> None:
        self.profile = PROFILE.copy()
        self.profile[:-2, 1] *= shoulder_scale

    def half_widths(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ys = self.profile[:, 0]
        return np.interp(y, ys, self.profile[:, 1]), np.interp(y, ys, self.profile[:, 2])

    def push_outside(self, p: np.ndarray, margin: float) -> np.ndarray:
        """Move points [N, 3] that are inside the torso (grown by `margin`) out to its surface."""
        top = self.profile[-1, 0]
        wx, wz = self.half_widths(p[:, 1])
        wx, wz = wx + margin, wz + margin
        norm = (np.abs(p[:, 0] / wx) ** EXPONENT + np.abs(p[:, 2] / wz) ** EXPONENT) ** (1.0 / EXPONENT)
        inside = (norm < 1.0) & (p[:, 1] < top) & (p[:, 1] > BOTTOM_Y)
        out = p.copy()
        out[inside, 0] /= norm[inside]
        out[inside, 2] /= norm[inside]
        return out

    def mesh(self, rows: int = 64, cols: int = 128) -> Mesh:
        ys = np.concatenate([np.linspace(BOTTOM_Y, -0.30, rows // 3), np.linspace(-0.29, self.profile[-1, 0], rows - rows // 3)])
        wx, wz = self.half_widths(ys)
        angle = np.arange(cols) / cols * 2 * np.pi - np.pi  # -π..π, front centre at 0
        s, c = np.sin(angle), np.cos(angle)
        sx = np.sign(s) * np.abs(s) ** (2.0 / EXPONENT)
        sz = np.sign(c) * np.abs(c) ** (2.0 / EXPONENT)
        pos = np.stack([wx[:, None] * sx, np.broadcast_to(ys[:, None], (rows, cols)), wz[:, None] * sz], -1)
        pos[..., 2] += 0.03 * np.exp(-((ys[:, None] + 0.45) / 0.15) ** 2) * np.clip(c, 0, 1) ** 2  # chest
        pos = pos.reshape(-1, 3)
        indices = grid_indices(rows, cols, wrap=True)
        uv = np.stack([np.broadcast_to(angle * 0.42, (rows, cols)), np.broadcast_to(ys[:, None], (rows, cols))], -1)
        aux = np.zeros((rows * cols, 3))
        aux[:, 0] = np.broadcast_to(angle, (rows, cols)).reshape(-1)
        torso = Mesh(pos, vertex_normals(pos, indices), indices, uv.reshape(-1, 2), aux)
        return merge([torso, self._bottom_cap(wx[0], wz[0], angle, sx, sz)])

    @staticmethod
    def _bottom_cap(wx: float, wz: float, angle, sx, sz) -> Mesh:
        rim = np.stack([wx * sx, np.full_like(sx, BOTTOM_Y), wz * sz], -1)
        pos = np.concatenate([[[0.0, BOTTOM_Y, 0.0]], rim])
        n = len(angle)
        idx = np.stack([np.zeros(n), 1 + (np.arange(n) + 1) % n, 1 + np.arange(n)], -1).astype(np.uint32)
        aux = np.zeros((n + 1, 3))
        aux[1:, 0] = angle
        uv = np.stack([np.concatenate([[0.0], angle * 0.42]), np.full(n + 1, BOTTOM_Y)], -1)
        return Mesh(pos, np.tile([0.0, -1.0, 0.0], (n + 1, 1)), idx, uv, aux)


def _ring_band(radius_lo: float, radius_hi: float, y_lo: float, y_hi: float, angle_span: float,
               rows: int = 6, cols: int = 48, z_offset: float = -0.03) -> Mesh:
    """A cone band around the neck covering angles within ±angle_span of the back (used by collars, hoods)."""
    t = np.linspace(0.0, 1.0, rows)[:, None]
    angle = np.linspace(-angle_span, angle_span, cols)[None, :] + np.pi
    radius = radius_lo + (radius_hi - radius_lo) * t
    pos = np.stack([radius * np.sin(angle), np.broadcast_to(y_lo + (y_hi - y_lo) * t, (rows, cols)),
                    radius * np.cos(angle) + z_offset], -1).reshape(-1, 3)
    indices = grid_indices(rows, cols, wrap=False)
    both = np.concatenate([indices, indices[:, ::-1]])  # two-sided: the inside of a collar is visible too
    uv = np.stack([np.broadcast_to(angle * 0.12, (rows, cols)), np.broadcast_to(y_lo + (y_hi - y_lo) * t, (rows, cols))], -1)
    aux = np.zeros((rows * cols, 3))
    aux[:, 0] = np.broadcast_to(angle - np.pi, (rows, cols)).reshape(-1)
    return Mesh(pos, vertex_normals(pos, indices), both, uv.reshape(-1, 2), aux)


def cut_meshes(clothing: Clothing, neck_radius: float) -> list[tuple[str, Mesh]]:
    """Extra geometry of the cut, as (role, mesh): role 'cloth' uses the garment pattern, 'trim' a solid colour."""
    cut = clothing.cut
    if cut == "turtleneck":
        return [("cloth", _ring_band(neck_radius + 0.012, neck_radius + 0.01, -0.13, 0.06, np.pi))]
    if cut == "shirt":
        stand = _ring_band(neck_radius + 0.014, neck_radius + 0.022, -0.125, -0.02, 2.6)
        flaps = _ring_band(neck_radius + 0.02, neck_radius + 0.07, -0.03, -0.11, 2.6, z_offset=-0.025)
        return [("cloth", stand), ("cloth", flaps)]
    if cut == "hoodie":
        t = np.linspace(-2.3, 2.3, 24)
        path = np.stack([0.19 * np.sin(t + np.pi), -0.10 + 0.05 * np.cos(t) ** 2, 0.15 * np.cos(t + np.pi) - 0.04], -1)
        hood = tubes(path[None], 0.055 + 0.02 * np.cos(t)[None] ** 2, sides=14)
        hood.uv = np.stack([hood.positions[:, 0], hood.positions[:, 1] + hood.positions[:, 2]], -1)
        hood.aux[:, 0] = np.pi
        return [("cloth", hood)]
    return []
