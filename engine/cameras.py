"""Cameras in the NeRF-synthetic convention, shared by the generator, importers, renderer and exports.

World: +Y up, the avatar faces +Z (the frontal camera sits on the +Z axis looking down -Z).
Camera-to-world matrices `c2w [4, 4]` use OpenGL camera axes: +X right, +Y up, the camera looks down -Z.
Pinhole intrinsics come from the horizontal field of view (`camera_angle_x`, radians), principal point at the
image centre, square pixels. Pixel (u, v): u to the right, v down, (0, 0) the top-left corner of the top-left pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world [4, 4] (OpenGL axes) for a camera at `eye` looking at `target`."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:  # looking straight along `up`: any axis not parallel to it will do
        helper = np.eye(3)[int(np.argmin(np.abs(back)))]
        right = np.cross(helper, back)
    right /= np.linalg.norm(right)
    true_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, back, eye
    return c2w


def orbit_position(azimuth_deg: float, elevation_deg: float, radius: float, target: np.ndarray) -> np.ndarray:
    """Point on a sphere around `target`; azimuth 0 = frontal (+Z), 90 = the avatar's left (+X)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    offset = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    return np.asarray(target, dtype=np.float64) + radius * offset


@dataclass(frozen=True)
class OrbitSpec:
    """A section of the sphere around the head: full 360° azimuth, elevation between the two limits (degrees)."""

    radius: float
    target: tuple[float, float, float]
    elevation_min: float = -20.0
    elevation_max: float = 40.0


# The camera rig of our datasets (rodinhd synth): the bust fits the unit cube, cameras look at this target.
DEFAULT_FOV_DEGREES = 40.0
DEFAULT_ORBIT = OrbitSpec(radius=2.85, target=(0.0, -0.05, 0.0))


def orbit_views(spec: OrbitSpec, count: int, phase: float = 0.0) -> list[tuple[float, float]]:
    """`count` (azimuth, elevation) pairs covering the sphere section evenly (a Fibonacci spiral).

    View 0 is always the frontal view (azimuth 0, elevation 0) when `phase` is 0. A non-zero `phase` (0..1)
    turns the spiral in azimuth, giving a disjoint set for held-out test views.
    """
    s_lo = math.sin(math.radians(spec.elevation_min))
    s_hi = math.sin(math.radians(spec.elevation_max))
    views = []
    for i in range(count):
        if i == 0 and phase == 0.0:
            views.append((0.0, 0.0))
            continue
        frac = (i + 0.5) / count
        elev = math.degrees(math.asin(s_lo + (s_hi - s_lo) * frac))  # equal-area in elevation
        azim = math.degrees((i + phase * 7.3) * GOLDEN_ANGLE) % 360.0
        views.append((azim, elev))
    return views


def focal_from_fov(camera_angle_x: float, width: int) -> float:
    """Focal length in pixels for a horizontal field of view in radians."""
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


def fov_from_focal(focal_px: float, width: int) -> float:
    return 2.0 * math.atan(0.5 * width / focal_px)


def project(points: np.ndarray, c2w: np.ndarray, camera_angle_x: float, width: int, height: int) -> np.ndarray:
    """Project world points [N, 3] to pixels.

    Returns [N, 3]: u, v and the depth along the viewing direction (positive in front of the camera).
    """
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    pts = np.asarray(points, dtype=np.float64)
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -cam[:, 2]
    focal = focal_from_fov(camera_angle_x, width)
    u = width / 2.0 + focal * cam[:, 0] / depth
    v = height / 2.0 - focal * cam[:, 1] / depth
    return np.stack([u, v, depth], axis=1)


def opengl_projection(camera_angle_x: float, aspect: float, near: float, far: float) -> np.ndarray:
    """Perspective projection [4, 4] matching `project` (aspect = width / height)."""
    fx = 1.0 / math.tan(0.5 * camera_angle_x)
    fy = fx * aspect
    proj = np.zeros((4, 4))
    proj[0, 0], proj[1, 1] = fx, fy
    proj[2, 2] = (far + near) / (near - far)
    proj[2, 3] = 2.0 * far * near / (near - far)
    proj[3, 2] = -1.0
    return proj


def is_rigid(c2w: np.ndarray, tol: float = 1e-3) -> bool:
    """True if the 3×3 block is a rotation (orthonormal, det +1) and the last row is [0, 0, 0, 1]."""
    m = np.asarray(c2w, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        return False
    rot = m[:3, :3]
    return (
        np.allclose(rot.T @ rot, np.eye(3), atol=tol)
        and abs(np.linalg.det(rot) - 1.0) < tol
        and np.allclose(m[3], [0, 0, 0, 1], atol=tol)
    )
