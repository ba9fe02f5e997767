"""The head: a displaced ellipsoid (jaw, chin, nose, brow ridge, eye sockets, cheeks, lips), eyes, ears, neck.

Head-local frame: centre `HEAD_CENTRE`, +Y up, +Z forward. Face features are placed by "face coordinates"
(fx, fy) = the x and y of a unit direction from the centre, so the same numbers drive the geometry here and the
painting in the skin shader (mouth, stubble, scalp).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.attributes import Face
from training.synth.mesh import Mesh, ellipsoid, merge, radial_surface, rotation_y, tubes

HEAD_CENTRE = np.array([0.0, 0.26, 0.0])
BASE_RADII = np.array([0.235, 0.305, 0.265])
EYE_FY = 0.10
BROW_FY = 0.27
MOUTH_FY = -0.42
NOSE_TIP_FY = -0.15
EYE_FX = 0.34


def _gauss(x, y, sx, sy):
    return np.exp(-((x / sx) ** 2 + (y / sy) ** 2))


@dataclass(frozen=True)
class HeadShape:
    """A callable radius field r(d) for unit directions d, plus the derived placements."""

    face: Face
    expression_smile: float

    @property
    def radii(self) -> np.ndarray:
        f = self.face
        return BASE_RADII * np.array([f.width, f.height, f.depth])

    def radius(self, d: np.ndarray) -> np.ndarray:
        """Distance from the head centre to the skin along unit directions d [N, 3] → [N]."""
        f = self.face
        rx, ry, rz = self.radii
        jaw_blend = np.clip(-d[:, 1] / 0.8, 0.0, 1.0) ** 1.5
        rx_eff = rx * (1.0 - (1.0 - f.jaw) * jaw_blend)
        r = 1.0 / np.sqrt((d[:, 0] / rx_eff) ** 2 + (d[:, 1] / ry) ** 2 + (d[:, 2] / rz) ** 2)
        return r + self._features(d)

    def _features(self, d: np.ndarray) -> np.ndarray:
        f = self.face
        fx, fy, front = d[:, 0], d[:, 1], np.clip(d[:, 2] / 0.45, 0.0, 1.0) ** 2
        ax = np.abs(fx)
        bridge_window = np.clip((0.20 - fy) / 0.3, 0.0, 1.0) * (fy > NOSE_TIP_FY - 0.04)
        nose = 0.030 * f.nose_bridge * np.exp(-(fx / (0.055 * f.nose_width)) ** 2) * bridge_window
        nose += 0.052 * f.nose_length * _gauss(fx, fy - NOSE_TIP_FY, 0.07 * f.nose_width, 0.065)
        nose += 0.018 * f.nose_width * _gauss(ax - 0.075 * f.nose_width, fy - NOSE_TIP_FY + 0.025, 0.045, 0.04)
        sockets = -0.012 * _gauss(ax - EYE_FX * f.eye_spacing, fy - EYE_FY, 0.12, 0.085)
        brow = 0.014 * _gauss(ax - 0.3, fy - BROW_FY + 0.03, 0.22, 0.05)
        cheeks = (0.006 + 0.008 * f.cheeks + 0.006 * self.expression_smile) * _gauss(ax - 0.45, fy + 0.12, 0.16, 0.14)
        lips = 0.016 * f.lip_fullness * _gauss(fx, fy - MOUTH_FY, 0.22 * f.mouth_width, 0.07)
        chin = 0.022 * (0.5 + f.chin) * _gauss(fx, fy + 0.78, 0.22, 0.12)
        return front * (nose + sockets + brow + cheeks + lips + chin)

    def surface(self, d: np.ndarray) -> np.ndarray:
        """World points on the skin along unit directions d [N, 3]."""
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        return HEAD_CENTRE + self.radius(d)[:, None] * d

    def face_point(self, fx: float, fy: float) -> np.ndarray:
        d = np.array([[fx, fy, np.sqrt(max(1.0 - fx * fx - fy * fy, 0.0))]])
        return self.surface(d)[0]

    def eye_centres(self) -> tuple[np.ndarray, float]:
        """Centres of both eyeballs [2, 3] and their radius."""
        f = self.face
        radius = 0.040 * f.eye_size
        centres = []
        for side in (-1.0, 1.0):
            skin = self.face_point(side * EYE_FX * f.eye_spacing, EYE_FY)
            centres.append(skin - np.array([0.0, 0.0, 0.45 * radius]))
        return np.array(centres), radius

    def ear_positions(self) -> np.ndarray:
        rx = self.radii[0]
        return np.array([[side * (rx * 0.97), HEAD_CENTRE[1] - 0.015, -0.015] for side in (-1.0, 1.0)])


def head_mesh(shape: HeadShape, rows: int = 120, cols: int = 180) -> Mesh:
    return radial_surface(shape.radius, rows, cols, HEAD_CENTRE)


def eye_meshes(shape: HeadShape) -> Mesh:
    """Both eyeballs; aux = local direction (+Z forward) for the iris and eyelid painting."""
    centres, radius = shape.eye_centres()
    return merge([ellipsoid([radius] * 3, c, rows=20, cols=28) for c in centres])


def ear_meshes(shape: HeadShape) -> Mesh:

    s = shape.face.ear_size
    parts = []
    for pos in shape.ear_positions():
        side = np.sign(pos[0])
        ear = ellipsoid([0.018, 0.058 * s, 0.036 * s], (0, 0, 0), rows=14, cols=20)
        ear.aux[:] = [side * 0.95, -0.3, 0.0]  # paints as plain skin (outside face, scalp and beard masks)
        parts.append(ear.transformed(rotation_y(side * 0.25), pos + np.array([side * 0.008, 0, 0])))
    return merge(parts)


def neck_mesh(masculine: float) -> Mesh:
    radius = 0.108 + 0.015 * masculine
    t = np.linspace(0.0, 1.0, 8)
    path = np.stack([np.zeros_like(t), -0.22 + t * (HEAD_CENTRE[1] - 0.05 + 0.22), -0.03 + 0.0 * t], -1)[None]
    neck = tubes(path, radius, sides=28)
    neck.aux[:] = [0.0, -0.97, 0.24]  # below the chin in face coordinates
    return neck
