"""Strand-level hair: scalp hair in ten styles, beards, moustaches and brows, grown as polylines around the
head and shoulders, then turned into thin ribbons (engine of the fine detail the paper cares about)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from training.synth.attributes import Face, Hair
from training.synth.body import Torso
from training.synth.head import BROW_FY, HEAD_CENTRE, MOUTH_FY, HeadShape
from training.synth.mesh import Mesh, merge, ribbons

# Hairline in face coordinates: the scalp is where d.y is above this height (front / above the ears / nape).
HAIRLINE_FRONT, HAIRLINE_SIDE, HAIRLINE_BACK = 0.50, 0.12, -0.50


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def scalp_mask(d: np.ndarray) -> np.ndarray:
    """True where unit directions d [N, 3] from the head centre fall on the scalp (mirrored in the shader)."""
    front = HAIRLINE_SIDE + (HAIRLINE_FRONT - HAIRLINE_SIDE) * _smoothstep(0.2, 0.75, d[:, 2])
    back = HAIRLINE_BACK + (HAIRLINE_SIDE - HAIRLINE_BACK) * _smoothstep(-0.6, 0.2, d[:, 2])
    return d[:, 1] > np.where(d[:, 2] > 0.2, front, back)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    return _unit(rng.normal(size=(n, 3)))


@dataclass(frozen=True)
class Growth:
    """How strands of one style grow: total length, stiffness (0 follows the flow at once, 1 never turns),
    weights of gravity / comb direction / outward push, curl radius and period, collision margin."""

    length: float
    stiffness: float = 0.75
    gravity: float = 0.3
    comb: float = 0.6
    outward: float = 0.1
    lift: float = 0.5
    curl_radius: float = 0.0
    curl_period: float = 0.06
    margin: float = 0.012


STYLES = {
    "short": Growth(length=0.11, gravity=0.2, comb=0.8, lift=0.6, margin=0.014),
    "side_part": Growth(length=0.19, gravity=0.35, comb=0.8, lift=0.4, margin=0.012),
    "long_straight": Growth(length=0.72, gravity=0.9, comb=0.5, lift=0.35, stiffness=0.7, margin=0.012),
    "bob": Growth(length=0.33, gravity=0.8, comb=0.5, lift=0.4, stiffness=0.7, margin=0.016),
    "bun": Growth(length=0.20, gravity=0.05, comb=1.0, lift=0.2, margin=0.008),
    "ponytail": Growth(length=0.30, gravity=0.05, comb=1.2, lift=0.2, margin=0.008),
    "curly": Growth(length=0.22, gravity=0.35, comb=0.3, outward=0.45, lift=0.9, curl_radius=0.016,
                    curl_period=0.07, margin=0.02),
    "afro": Growth(length=0.19, gravity=0.0, comb=0.0, outward=1.0, lift=1.0, stiffness=0.6, curl_radius=0.016,
                   curl_period=0.06, margin=0.02),
}
BUN_CENTRE = HEAD_CENTRE + np.array([0.0, 0.20, -0.25])
TIE_POINT = HEAD_CENTRE + np.array([0.0, 0.04, -0.30])


def comb_direction(style: str, roots: np.ndarray, p: np.ndarray, part_side: float) -> np.ndarray:
    """The direction each strand is brushed towards, per style [N, 3]."""
    rel = roots - HEAD_CENTRE
    sx = np.sign(rel[:, :1] + 1e-6)
    if style == "side_part":
        part_x = 0.3 * part_side * 0.24
        side = np.sign(rel[:, :1] - part_x + 1e-6)
        return _unit(np.concatenate([side, np.full_like(side, -0.45), np.full_like(side, -0.2)], 1))
    if style in ("long_straight", "bob"):
        front = (rel[:, 2:3] > 0.0).astype(float)
        return _unit(np.concatenate([sx * (0.3 + 0.9 * front), -np.ones_like(sx) * 0.6, -0.2 * np.ones_like(sx)], 1))
    if style == "bun":
        return _unit(BUN_CENTRE - p)
    if style == "ponytail":
        return _unit(TIE_POINT - p)
    return _unit(np.concatenate([0.25 * sx, -0.35 * np.ones_like(sx), -np.ones_like(sx)], 1))  # back and down


def collide(p: np.ndarray, head: HeadShape, torso: Torso, margin: float) -> np.ndarray:
    """Push points [N, 3] out of the head (true surface + margin) and the shoulders."""
    rel = p - HEAD_CENTRE
    dist = np.linalg.norm(rel, axis=1)
    d = rel / np.maximum(dist, 1e-9)[:, None]
    limit = head.radius(d) + margin
    inside = dist < limit
    p = p.copy()
    p[inside] = HEAD_CENTRE + d[inside] * limit[inside, None]
    return torso.push_outside(p, margin)


def grow(style: str, g: Growth, roots, normals, head: HeadShape, torso: Torso, hair: Hair, rng) -> np.ndarray:
    """Grow strands from `roots [N, 3]` (scalp normals `normals`) → polylines [N, P, 3]."""
    length = g.length * hair.length_scale * rng.uniform(0.85, 1.1, size=(len(roots), 1))
    points = max(4, int(g.length * hair.length_scale / 0.035) + 2)
    seg = length / (points - 1)
    p = roots + normals * g.margin
    direction = _unit(normals * g.lift + comb_direction(style, roots, p, hair.part_side))
    path = [p]
    for _ in range(points - 1):
        flow = g.comb * comb_direction(style, roots, p, hair.part_side) + g.outward * _unit(p - HEAD_CENTRE)
        flow = flow + g.gravity * np.array([0.0, -1.0, 0.0])
        direction = _unit(g.stiffness * direction + (1.0 - g.stiffness) * _unit(flow))
        new_p = collide(p + direction * seg, head, torso, g.margin)
        direction = _unit(new_p - p)
        p = new_p
        path.append(p)
    paths = np.stack(path, 1)
    if g.curl_radius > 0:  # resample first: a helix needs several points per turn
        paths = add_curls(_densify(paths, max(1, round(seg.mean() / (g.curl_period / 4)))), g, rng)
    if style == "bob":  # ends tuck in towards the neck
        t = np.linspace(0.0, 1.0, points)[None, :, None] ** 3
        towards_axis = np.concatenate([-paths[..., :1], np.zeros_like(paths[..., 1:2]), -paths[..., 2:3] - 0.03], -1)
        paths = paths + 0.25 * t * towards_axis
    return paths


def add_curls(paths: np.ndarray, g: Growth, rng) -> np.ndarray:
    """Wind strands into helices around their path; radius ramps up from the root."""
    tangent = _unit(np.gradient(paths, axis=1))
    e1 = _unit(np.cross(tangent, np.array([0.31, 0.93, 0.17])))
    e2 = np.cross(tangent, e1)
    arc = np.cumsum(np.linalg.norm(np.diff(paths, axis=1, prepend=paths[:, :1]), axis=-1), axis=1)
    phase = rng.uniform(0, 2 * np.pi, size=(len(paths), 1))
    angle = 2 * np.pi * arc / g.curl_period + phase
    ramp = np.clip(arc / 0.05, 0.0, 1.0)[..., None]
    offset = g.curl_radius * ramp * (np.cos(angle)[..., None] * e1 + np.sin(angle)[..., None] * e2)
    return paths + offset


def _densify(paths: np.ndarray, factor: int) -> np.ndarray:
    """Resample polylines with `factor`× more points (curls need them to look round)."""
    t_old = np.linspace(0, 1, paths.shape[1])
    t_new = np.linspace(0, 1, (paths.shape[1] - 1) * factor + 1)
    return np.stack([np.stack([np.interp(t_new, t_old, paths[i, :, k]) for k in range(3)], -1)
                     for i in range(len(paths))])


def strand_colours(rgb, n: int, rng, spread: float = 0.18) -> np.ndarray:
    base = np.asarray(rgb)[None]
    shade = rng.uniform(1.0 - spread, 1.0 + spread, size=(n, 1))
    tint = rng.normal(0, 0.02, size=(n, 3))
    return np.clip(base * shade + tint, 0.0, 1.0)


def strands_to_mesh(paths: np.ndarray, colours: np.ndarray, root_width: float, tip_width: float) -> Mesh:
    t = np.linspace(0.0, 1.0, paths.shape[1])[None]
    width = np.broadcast_to(root_width + (tip_width - root_width) * t, paths.shape[:2])
    outward = _unit(paths - HEAD_CENTRE)
    return ribbons(paths, width, outward, colours)


def scalp_roots(head: HeadShape, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    d = random_directions(rng, int(n * 2.6))
    d = d[scalp_mask(d)][:n]
    return head.surface(d), d


def scalp_hair(hair: Hair, head: HeadShape, torso: Torso, rng) -> Mesh | None:
    if hair.style not in STYLES and hair.style not in ("bun", "ponytail"):
        return None  # bald, buzz: painted on the scalp by the shader
    g = STYLES[hair.style]
    count = int(hair.strand_count * (0.8 if hair.style == "afro" else 1.0))
    roots, normals = scalp_roots(head, count, rng)
    paths = grow(hair.style, g, roots, normals, head, torso, hair, rng)
    parts = [(paths, strand_colours(hair.rgb, len(paths), rng))]
    if hair.style == "bun":
        parts.append(_bun(hair, rng))
    if hair.style == "ponytail":
        parts.append(_ponytail(hair, head, torso, rng))
    return merge([strands_to_mesh(p, c, 0.0065, 0.0035) for p, c in parts])


def _bun(hair: Hair, rng) -> tuple[np.ndarray, np.ndarray]:
    n, pts = 900, 24
    a, b = random_directions(rng, n), random_directions(rng, n)
    b = _unit(b - a * np.sum(a * b, 1, keepdims=True))
    t = rng.uniform(0, 2 * np.pi, (n, 1)) + np.linspace(0, 1.6 * np.pi, pts)[None]
    radius = rng.uniform(0.055, 0.085, (n, 1, 1))
    paths = BUN_CENTRE + radius * (np.cos(t)[..., None] * a[:, None] + np.sin(t)[..., None] * b[:, None])
    return paths, strand_colours(hair.rgb, n, rng)


def _ponytail(hair: Hair, head: HeadShape, torso: Torso, rng) -> tuple[np.ndarray, np.ndarray]:
    n = 1200
    roots = TIE_POINT + rng.normal(0, 0.012, (n, 3))
    tail = Growth(length=0.42, gravity=0.9, comb=0.0, outward=0.0, lift=1.0, stiffness=0.6, margin=0.01)
    start = np.tile(_unit(np.array([0.0, 0.2, -1.0])), (n, 1))
    paths = grow("ponytail_tail", tail, roots, start, head, torso, hair, rng)
    return paths, strand_colours(hair.rgb, n, rng)


def facial_hair(face: Face, hair: Hair, head: HeadShape, torso: Torso, rng) -> Mesh | None:
    if hair.facial not in ("moustache", "full_beard"):
        return None
    d = random_directions(rng, 40000)
    d = d[d[:, 2] > -0.15]
    fx, fy = d[:, 0], d[:, 1]
    mouth_w = 0.21 * face.mouth_width
    on_lips = (np.abs(fx) < mouth_w + 0.02) & (np.abs(fy - MOUTH_FY) < 0.055)
    moustache = (np.abs(fx) < mouth_w + 0.03) & (fy > MOUTH_FY + 0.05) & (fy < MOUTH_FY + 0.12) & (d[:, 2] > 0.5)
    if hair.facial == "moustache":
        mask, count, g = moustache, 700, Growth(length=0.035, gravity=1.0, comb=0.0, outward=0.5, lift=0.6, margin=0.004)
    else:
        jaw = (fy < -0.22 + 0.3 * np.clip(np.abs(fx) - 0.45, 0, 1)) & (fy > -0.98) & ~on_lips
        mask, count, g = jaw | moustache, 2600, Growth(length=0.075, gravity=1.0, comb=0.0, outward=0.6, lift=0.7,
                                                        margin=0.006)
    d = d[mask][:count]
    roots = head.surface(d)
    beard_hair = replace(hair, length_scale=1.0)
    paths = grow("beard", g, roots, d, head, torso, beard_hair, rng)
    return strands_to_mesh(paths, strand_colours(hair.facial_rgb, len(paths), rng), 0.004, 0.002)


BROW_SHAPES = {"straight": (0.01, 110, 0.022), "arched": (0.045, 110, 0.022), "thick": (0.02, 190, 0.034),
               "thin": (0.03, 70, 0.014)}


def brows(face: Face, hair: Hair, head: HeadShape, torso: Torso, rng) -> Mesh:
    arch, per_side, spread = BROW_SHAPES[face.brows]
    roots, dirs = [], []
    for side in (-1.0, 1.0):
        t = rng.uniform(0.0, 1.0, per_side)
        fx = side * (0.14 + t * 0.36) * face.eye_spacing
        fy = BROW_FY + arch * np.sin(np.pi * t ** 0.8) - 0.01 * t + rng.uniform(-0.5, 0.5, per_side) * spread
        d = np.stack([fx, fy, np.sqrt(np.clip(1 - fx ** 2 - fy ** 2, 0, 1))], 1)
        roots.append(head.surface(d))
        dirs.append(_unit(np.stack([side * np.ones_like(t), 0.25 * np.ones_like(t), 0.35 * np.ones_like(t)], 1)))
    roots, dirs = np.concatenate(roots), np.concatenate(dirs)
    seg = np.linspace(0.0, 0.03, 4)[None, :, None]
    paths = roots[:, None] + dirs[:, None] * seg
    paths = np.stack([collide(paths[:, k], head, torso, 0.003) for k in range(paths.shape[1])], 1)
    return strands_to_mesh(paths, strand_colours(hair.brow_rgb, len(paths), rng, 0.1), 0.0035, 0.0015)
