"""Triangle meshes as numpy arrays, and the primitives avatars are built from.

Every vertex carries 14 floats: position (3), normal (3), uv (2), aux (3), colour (3). `aux` is free per material:
the undeformed direction for skin (face painting), the strand tangent for hair, the local direction for eyes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VERTEX_FLOATS = 14


@dataclass
class Mesh:
    positions: np.ndarray  # [N, 3]
    normals: np.ndarray  # [N, 3]
    indices: np.ndarray  # [M, 3] uint32
    uv: np.ndarray = field(default=None)  # [N, 2]
    aux: np.ndarray = field(default=None)  # [N, 3]
    colours: np.ndarray = field(default=None)  # [N, 3]

    def __post_init__(self) -> None:
        n = len(self.positions)
        if self.uv is None:
            self.uv = np.zeros((n, 2))
        if self.aux is None:
            self.aux = np.zeros((n, 3))
        if self.colours is None:
            self.colours = np.ones((n, 3))

    def vertex_array(self) -> np.ndarray:
        """Interleaved float32 [N, 14] for a GL vertex buffer."""
        return np.concatenate([self.positions, self.normals, self.uv, self.aux, self.colours], 1).astype("f4")

    def transformed(self, rotation: np.ndarray, translation) -> "Mesh":
        return Mesh(self.positions @ rotation.T + np.asarray(translation), self.normals @ rotation.T, self.indices,
                    self.uv, self.aux, self.colours)


def merge(meshes: list[Mesh]) -> Mesh:
    offsets = np.cumsum([0] + [len(m.positions) for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.positions for m in meshes]),
        np.concatenate([m.normals for m in meshes]),
        np.concatenate([m.indices + o for m, o in zip(meshes, offsets)]).astype(np.uint32),
        np.concatenate([m.uv for m in meshes]),
        np.concatenate([m.aux for m in meshes]),
        np.concatenate([m.colours for m in meshes]),
    )


def grid_indices(rows: int, cols: int, wrap: bool) -> np.ndarray:
    """Two triangles per cell of a rows×cols vertex grid (row-major); `wrap` joins the last column to the first."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols if wrap else cols - 1), indexing="ij")
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    d, e = a + cols, b + cols
    return np.stack([np.stack([a, d, b], -1), np.stack([b, d, e], -1)], 2).reshape(-1, 3).astype(np.uint32)


def vertex_normals(positions: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Area-weighted smooth normals."""
    tri = positions[indices]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(positions)
    for k in range(3):
        np.add.at(normals, indices[:, k], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def sphere_directions(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions on a lat-long grid [rows*cols, 3] (+Y pole first) and their (u, v) in [0, 1]."""
    v = np.linspace(0.0, 1.0, rows)
    u = np.arange(cols) / cols
    theta, phi = np.meshgrid(v * np.pi, u * 2 * np.pi, indexing="ij")
    dirs = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], -1).reshape(-1, 3)
    uv = np.stack(np.meshgrid(v, u, indexing="ij")[::-1], -1).reshape(-1, 2)
    return dirs, uv


def radial_surface(radius_fn, rows: int, cols: int, centre=(0.0, 0.0, 0.0)) -> Mesh:
    """A closed star-shaped surface: each unit direction d is pushed to `radius_fn(d) * d` (radius_fn vectorised,
    returning [N] or [N, 3] per-axis radii). `aux` keeps the undeformed direction."""
    dirs, uv = sphere_directions(rows, cols)
    radius = radius_fn(dirs)
    radius = radius[:, None] if radius.ndim == 1 else radius
    positions = dirs * radius + np.asarray(centre)
    indices = grid_indices(rows, cols, wrap=True)
    return Mesh(positions, vertex_normals(positions, indices), indices, uv, dirs.copy())


def ellipsoid(radii, centre=(0.0, 0.0, 0.0), rows: int = 16, cols: int = 24) -> Mesh:
    return radial_surface(lambda d: np.broadcast_to(np.asarray(radii, float), d.shape), rows, cols, centre)


def tubes(paths: np.ndarray, radius, sides: int = 6, closed: bool = False) -> Mesh:
    """Tubes around polylines `paths [T, P, 3]` (T tubes of P points); `radius` scalar or [T, P]."""
    t_count, p_count, _ = paths.shape
    tangent = np.gradient(paths, axis=1)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=-1, keepdims=True), 1e-12)
    ref = np.where(np.abs(tangent[..., 1:2]) < 0.9, [0.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    side = np.cross(tangent, ref)
    side /= np.linalg.norm(side, axis=-1, keepdims=True)
    up = np.cross(side, tangent)
    angles = np.arange(sides) / sides * 2 * np.pi
    ring = np.cos(angles)[:, None] * side[..., None, :] + np.sin(angles)[:, None] * up[..., None, :]  # [T,P,S,3]
    radius = np.broadcast_to(np.asarray(radius, float), (t_count, p_count))[..., None, None]
    positions = (paths[..., None, :] + ring * radius).reshape(-1, 3)
    per_tube = grid_indices(p_count, sides, wrap=True)
    if closed:
        last = (p_count - 1) * sides
        extra = grid_indices(2, sides, True).astype(np.int64)  # joins the last ring back to the first
        extra = np.where(extra < sides, extra + last, extra - sides)
        per_tube = np.concatenate([per_tube, extra])
    offsets = (np.arange(t_count) * p_count * sides)[:, None, None]
    indices = (per_tube[None] + offsets).reshape(-1, 3).astype(np.uint32)
    aux = np.broadcast_to(tangent[..., None, :], (t_count, p_count, sides, 3)).reshape(-1, 3)
    return Mesh(positions, ring.reshape(-1, 3), indices, aux=aux.copy())


def ribbons(paths: np.ndarray, width: np.ndarray, outward: np.ndarray, colours: np.ndarray) -> Mesh:
    """Flat strips along polylines `paths [T, P, 3]`, for hair strands.

    Each strip lies across `outward [T, P, 3]` (the direction away from the scalp), so strands show their broad side
    to a viewer outside the head. `width [T, P]`; `colours [T, 3]`. uv = (across 0..1, along root 0 → tip 1);
    aux = strand tangent (for anisotropic highlights); normal = outward.
    """
    t_count, p_count, _ = paths.shape
    tangent = np.gradient(paths, axis=1)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=-1, keepdims=True), 1e-12)
    side = np.cross(tangent, outward)
    side /= np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-12)
    normal = np.cross(side, tangent)
    half = (0.5 * width)[..., None] * side
    positions = np.stack([paths - half, paths + half], axis=2).reshape(-1, 3)
    normals = np.repeat(normal, 2, axis=1).reshape(-1, 3)
    along = np.broadcast_to(np.linspace(0.0, 1.0, p_count)[None, :, None], (t_count, p_count, 2))
    across = np.broadcast_to(np.array([0.0, 1.0])[None, None, :], (t_count, p_count, 2))
    uv = np.stack([across, along], -1).reshape(-1, 2)
    per_strip = grid_indices(p_count, 2, wrap=False)
    offsets = (np.arange(t_count) * p_count * 2)[:, None, None]
    indices = (per_strip[None] + offsets).reshape(-1, 3).astype(np.uint32)
    aux = np.repeat(tangent, 2, axis=1).reshape(-1, 3)
    cols = np.repeat(colours[:, None, :], p_count * 2, axis=1).reshape(-1, 3)
    return Mesh(positions, normals, indices, uv, aux, cols)


def rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
