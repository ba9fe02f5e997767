"""Glasses, hats and earrings."""
from __future__ import annotations

import numpy as np

from training.synth.attributes import Accessories
from training.synth.head import HEAD_CENTRE, HeadShape
from training.synth.mesh import Mesh, grid_indices, merge, tubes, vertex_normals


def _rim_path(kind: str, centre: np.ndarray, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    if kind == "round":
        x, y = 0.052 * np.cos(t), 0.050 * np.sin(t)
    else:  # a rounded rectangle (superellipse); sunglasses are a bit larger
        scale = 1.12 if kind == "sunglasses" else 1.0
        c, s = np.cos(t), np.sin(t)
        x = scale * 0.064 * np.sign(c) * np.abs(c) ** 0.5
        y = scale * 0.044 * np.sign(s) * np.abs(s) ** 0.5
    return centre + np.stack([x, y, -0.004 * (x / 0.06) ** 2 * 0], 1)


def _lens(rim: np.ndarray) -> Mesh:
    centre = rim.mean(0)
    pos = np.concatenate([centre[None], rim])
    n = len(rim)
    tri = np.stack([np.zeros(n), 1 + np.arange(n), 1 + (np.arange(n) + 1) % n], 1).astype(np.uint32)
    indices = np.concatenate([tri, tri[:, ::-1]])
    return Mesh(pos, np.tile([0.0, 0.0, 1.0], (n + 1, 1)), indices)


def glasses(acc: Accessories, head: HeadShape) -> tuple[Mesh | None, Mesh | None]:
    """(frames, lenses); lenses only for sunglasses."""
    if acc.glasses == "none":
        return None, None
    eyes, radius = head.eye_centres()
    front_z = eyes[:, 2].max() + radius + 0.035
    rims = [_rim_path(acc.glasses, np.array([e[0], e[1], front_z])) for e in eyes]
    frame_parts = [tubes(r[None], 0.0045, sides=6, closed=True) for r in rims]
    inner = [r[np.argmin(np.abs(r[:, 0]))] for r in rims]
    t = np.linspace(0, 1, 9)[:, None]
    bridge = inner[0] + (inner[1] - inner[0]) * t + np.array([0, 0.012, 0.006]) * np.sin(np.pi * t)
    frame_parts.append(tubes(bridge[None], 0.0035, sides=6))
    rx = head.radii[0]
    for rim, side in zip(rims, (-1.0, 1.0)):
        outer = rim[np.argmax(side * rim[:, 0])]
        ear = np.array([side * (rx + 0.012), outer[1] - 0.005, HEAD_CENTRE[2] - 0.02])
        arm = outer + (ear - outer) * t
        arm[:, 0] += side * 0.01 * np.sin(np.pi * t[:, 0])
        frame_parts.append(tubes(arm[None], 0.0035, sides=6))
    lenses = merge([_lens(r) for r in rims]) if acc.glasses == "sunglasses" else None
    return merge(frame_parts), lenses


def _dome(radii: np.ndarray, rim_front: float, rim_back: float, rows: int = 40, cols: int = 96) -> Mesh:
    """The top of an ellipsoid down to a rim that is lower at the back (beanies, caps)."""
    angle = np.arange(cols) / cols * 2 * np.pi - np.pi
    rim_y = rim_back + (rim_front - rim_back) * (0.5 + 0.5 * np.cos(angle))  # height of the rim per angle
    theta_rim = np.arccos(np.clip(rim_y, -1, 1))
    theta = np.linspace(0.0, 1.0, rows)[:, None] * theta_rim[None]
    d = np.stack([np.sin(theta) * np.sin(angle), np.cos(theta), np.sin(theta) * np.cos(angle)], -1)
    pos = (HEAD_CENTRE + d * radii).reshape(-1, 3)
    indices = grid_indices(rows, cols, wrap=True)
    uv = np.stack([np.broadcast_to(angle * 0.3, (rows, cols)), (pos[:, 1]).reshape(rows, cols)], -1).reshape(-1, 2)
    aux = np.zeros((rows * cols, 3))
    aux[:, 0] = np.broadcast_to(angle, (rows, cols)).reshape(-1)
    return Mesh(pos, vertex_normals(pos, indices), indices, uv, aux)


def hat(acc: Accessories, head: HeadShape, volume: float) -> tuple[Mesh | None, Mesh | None]:
    """(crown, brim): the crown uses the hat pattern; the brim (caps only) is plain."""
    if acc.hat == "none":
        return None, None
    radii = head.radii + 0.03 + volume
    if acc.hat == "beanie":
        return _dome(radii * np.array([1.0, 1.08, 1.0]), 0.55, 0.05), None
    crown = _dome(radii * np.array([1.0, 0.98, 1.0]), 0.5, 0.2)
    u = np.linspace(-1.0, 1.0, 24)
    v = np.linspace(0.0, 1.0, 4)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    front = HEAD_CENTRE + np.array([0.0, radii[1] * 0.48, radii[2] * 0.86])
    pos = np.stack([uu * radii[0] * 0.8 * (1 - 0.3 * vv), front[1] - 0.03 * vv - 0.02 * uu ** 2,
                    front[2] + vv * 0.16 - 0.1 * uu ** 2], -1).reshape(-1, 3)
    idx = grid_indices(len(u), len(v), wrap=False)
    brim = Mesh(pos, vertex_normals(pos, idx), np.concatenate([idx, idx[:, ::-1]]))
    return crown, brim


def earrings(acc: Accessories, head: HeadShape) -> Mesh | None:
    if acc.earrings == "none":
        return None
    parts = []
    for ear in head.ear_positions():
        side = np.sign(ear[0])
        lobe = ear + np.array([side * 0.02, -0.05 * head.face.ear_size, 0.012])
        if acc.earrings == "studs":
            t = np.linspace(0, 1, 5)[:, None]
            parts.append(tubes((lobe + np.array([side * 0.004, 0, 0]) * t)[None], 0.008 * np.sin(np.pi * t.T) + 1e-4,
                               sides=10))
        else:
            a = np.linspace(0, 2 * np.pi, 32, endpoint=False)
            ring = lobe + np.stack([np.zeros_like(a), -0.022 + 0.022 * np.cos(a), 0.022 * np.sin(a)], 1)
            parts.append(tubes(ring[None], 0.0028, sides=8, closed=True))
    return merge(parts)
