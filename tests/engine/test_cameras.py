"""engine.cameras: the NeRF-synthetic / OpenGL camera convention every producer and consumer of cameras shares."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.cameras import (
    OrbitSpec, focal_from_fov, fov_from_focal, is_rigid, look_at, opengl_projection, orbit_position, orbit_views,
    project,
)

SPEC = OrbitSpec(radius=2.85, target=(0.0, -0.05, 0.0), elevation_min=-20.0, elevation_max=40.0)


def _unit_dirs(views) -> np.ndarray:
    return np.array([orbit_position(az, el, 1.0, np.zeros(3)) for az, el in views])


# ---- look_at ----

@pytest.mark.parametrize("eye, target", [
    ((0.0, 0.0, 3.0), (0.0, 0.0, 0.0)),
    ((1.5, 2.0, -2.5), (0.2, -0.1, 0.3)),
    ((-3.0, -1.0, 0.5), (0.0, 0.5, 0.0)),
    ((0.0, 4.0, 0.0), (0.0, 0.0, 0.0)),  # straight down along `up`: the degenerate case
])
def test_look_at_is_rigid_and_looks_down_minus_z_at_the_target(eye, target):
    eye, target = np.array(eye), np.array(target)
    c2w = look_at(eye, target)
    assert is_rigid(c2w, tol=1e-9)
    np.testing.assert_allclose(c2w[:3, 3], eye)
    forward = -c2w[:3, 2]  # the camera looks down its -Z axis
    np.testing.assert_allclose(forward, (target - eye) / np.linalg.norm(target - eye), atol=1e-12)
    # the target sits on the optical axis: camera coordinates (0, 0, -distance)
    cam = np.linalg.inv(c2w) @ np.append(target, 1.0)
    np.testing.assert_allclose(cam[:3], [0.0, 0.0, -np.linalg.norm(target - eye)], atol=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_look_at_along_a_custom_up_axis_stays_finite():
    c2w = look_at(np.array([0.0, 0.0, 4.0]), np.zeros(3), up=np.array([0.0, 0.0, 1.0]))  # Blender-style top view
    assert is_rigid(c2w)
    np.testing.assert_allclose(-c2w[:3, 2], [0.0, 0.0, -1.0], atol=1e-12)


@pytest.mark.parametrize("eye", [(0.0, 0.0, 3.0), (2.0, 1.0, 2.0), (-1.0, -0.8, -2.5), (3.0, 2.5, 0.0)])
def test_look_at_keeps_world_up_up_and_right_horizontal(eye):
    c2w = look_at(np.array(eye), np.zeros(3))
    right, up = c2w[:3, 0], c2w[:3, 1]
    assert up[1] > 0.5  # +Y column points up-ish
    assert abs(right[1]) < 1e-12  # no roll: the right vector stays horizontal


def test_frontal_camera_is_the_identity_rotation():
    c2w = look_at(np.array([0.0, 0.0, 5.0]), np.zeros(3))
    np.testing.assert_allclose(c2w[:3, :3], np.eye(3), atol=1e-12)


# ---- orbits ----

def test_orbit_position_azimuth_zero_is_plus_z_and_ninety_is_plus_x():
    target = np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(orbit_position(0.0, 0.0, 2.0, target), target + [0.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(orbit_position(90.0, 0.0, 2.0, target), target + [2.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(orbit_position(180.0, 0.0, 2.0, target), target + [0.0, 0.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(orbit_position(0.0, 90.0, 2.0, target), target + [0.0, 2.0, 0.0], atol=1e-12)
    # any angle: the point is `radius` away, at the requested height
    p = orbit_position(33.0, 25.0, 2.0, target)
    assert np.linalg.norm(p - target) == pytest.approx(2.0)
    assert p[1] - target[1] == pytest.approx(2.0 * math.sin(math.radians(25.0)))


@pytest.mark.parametrize("count", [1, 2, 16, 64])
def test_orbit_view_zero_is_frontal(count):
    assert orbit_views(SPEC, count)[0] == (0.0, 0.0)


@pytest.mark.parametrize("count, phase", [(16, 0.0), (64, 0.0), (300, 0.0), (16, 0.5), (8, 0.5), (20, 0.5)])
def test_orbit_views_stay_within_limits_and_cover_every_azimuth_quadrant(count, phase):
    views = orbit_views(SPEC, count, phase)
    assert len(views) == count
    azimuths = np.array([az for az, _ in views])
    elevations = np.array([el for _, el in views])
    assert np.all((azimuths >= 0.0) & (azimuths < 360.0))
    assert np.all(elevations >= SPEC.elevation_min - 1e-9) and np.all(elevations <= SPEC.elevation_max + 1e-9)
    quadrants = np.bincount((azimuths // 90).astype(int), minlength=4)
    assert np.all(quadrants >= count // 8), quadrants  # every quarter of the circle, roughly evenly
    assert len(set(views)) == count  # no duplicate cameras
    assert elevations.max() - elevations.min() > 0.6 * (SPEC.elevation_max - SPEC.elevation_min)


@pytest.mark.parametrize("train, test", [(12, 4), (16, 16), (64, 8), (300, 20), (4, 2), (1, 1)])
def test_test_spiral_shares_no_camera_with_the_train_spiral(train, test):
    train_dirs = _unit_dirs(orbit_views(SPEC, train, 0.0))
    test_dirs = _unit_dirs(orbit_views(SPEC, test, 0.5))
    angles = np.degrees(np.arccos(np.clip(train_dirs @ test_dirs.T, -1.0, 1.0)))
    assert angles.min() > 0.5, f"a held-out camera is within {angles.min():.3f}° of a training camera"


# ---- projection ----

def test_target_projects_to_the_image_centre():
    target = np.array([0.2, -0.1, 0.4])
    for az, el in [(0.0, 0.0), (70.0, 20.0), (200.0, -15.0)]:
        c2w = look_at(orbit_position(az, el, 3.0, target), target)
        u, v, depth = project(target[None], c2w, math.radians(40.0), 120, 80)[0]
        assert (u, v) == (pytest.approx(60.0), pytest.approx(40.0))
        assert depth == pytest.approx(3.0)


def test_points_right_and_up_of_the_camera_move_right_and_up_in_the_image():
    fov, width, height = math.radians(50.0), 100, 60
    target = np.zeros(3)
    c2w = look_at(np.array([1.0, 0.5, 2.0]), target)
    right, up = c2w[:3, 0], c2w[:3, 1]
    depth = np.linalg.norm(c2w[:3, 3] - target)
    focal = focal_from_fov(fov, width)
    pts = np.stack([target + right, target + up, target - right])
    (u_r, v_r, d_r), (u_u, v_u, _), (u_l, _, _) = project(pts, c2w, fov, width, height)
    assert u_r == pytest.approx(width / 2 + focal / depth) and v_r == pytest.approx(height / 2)
    assert d_r == pytest.approx(depth)
    assert u_u == pytest.approx(width / 2) and v_u == pytest.approx(height / 2 - focal / depth)  # v grows downward
    assert u_l == pytest.approx(width / 2 - focal / depth)


def test_points_behind_the_camera_have_negative_depth():
    c2w = look_at(np.array([0.0, 0.0, 3.0]), np.zeros(3))
    assert project(np.array([[0.0, 0.0, 5.0]]), c2w, 1.0, 64, 64)[0, 2] == pytest.approx(-2.0)


@pytest.mark.parametrize("width, height", [(64, 64), (80, 60), (48, 96)])
def test_opengl_projection_agrees_with_project(width, height):
    rng = np.random.default_rng(3)
    fov, near, far = math.radians(40.0), 0.5, 10.0
    c2w = look_at(np.array([1.2, 0.7, 2.4]), np.array([0.0, -0.05, 0.0]))
    pts = rng.uniform(-0.6, 0.6, size=(20, 3))
    expected = project(pts, c2w, fov, width, height)
    clip = (opengl_projection(fov, width / height, near, far) @ np.linalg.inv(c2w) @ np.c_[pts, np.ones(20)].T).T
    ndc = clip[:, :3] / clip[:, 3:4]
    u = (ndc[:, 0] + 1.0) / 2.0 * width  # NDC -1 is the left edge of pixel 0, +1 the right edge of the last
    v = (1.0 - ndc[:, 1]) / 2.0 * height  # NDC +1 is the top edge
    np.testing.assert_allclose(u, expected[:, 0], atol=1e-9)
    np.testing.assert_allclose(v, expected[:, 1], atol=1e-9)
    np.testing.assert_allclose(clip[:, 3], expected[:, 2], atol=1e-9)  # w = depth along the view direction
    assert np.all(np.abs(ndc[:, 2]) < 1.0)  # all between the clip planes


def test_opengl_projection_maps_near_and_far_planes_to_minus_one_and_one():
    near, far = 0.5, 10.0
    proj = opengl_projection(1.0, 1.0, near, far)
    for z, ndc_z in [(-near, -1.0), (-far, 1.0)]:
        clip = proj @ np.array([0.0, 0.0, z, 1.0])
        assert clip[2] / clip[3] == pytest.approx(ndc_z)


@pytest.mark.parametrize("fov_deg, width", [(40.0, 256), (10.0, 64), (90.0, 1024), (120.0, 33)])
def test_fov_focal_round_trip(fov_deg, width):
    fov = math.radians(fov_deg)
    focal = focal_from_fov(fov, width)
    assert fov_from_focal(focal, width) == pytest.approx(fov, rel=1e-12)
    assert focal_from_fov(fov_from_focal(focal, width), width) == pytest.approx(focal, rel=1e-12)


def test_focal_of_a_ninety_degree_fov_is_half_the_width():
    assert focal_from_fov(math.pi / 2, 200) == pytest.approx(100.0)


# ---- is_rigid ----

def test_is_rigid_accepts_rotations_with_translation():
    c2w = look_at(np.array([1.0, 2.0, 3.0]), np.zeros(3))
    assert is_rigid(c2w)
    assert is_rigid(np.eye(4))


def test_is_rigid_rejects_scale_nan_reflection_and_bad_shapes():
    c2w = look_at(np.array([1.0, 2.0, 3.0]), np.zeros(3))
    scaled = c2w.copy()
    scaled[:3, :3] *= 1.1
    with_nan = c2w.copy()
    with_nan[1, 3] = np.nan
    with_inf = c2w.copy()
    with_inf[0, 0] = np.inf
    reflected = c2w.copy()
    reflected[:3, 0] *= -1.0  # orthonormal but det -1: a mirrored (left-handed) camera
    sheared = np.eye(4)
    sheared[0, 1] = 0.2
    bad_last_row = c2w.copy()
    bad_last_row[3] = [0.0, 0.0, 1.0, 1.0]
    for m in (scaled, with_nan, with_inf, reflected, sheared, bad_last_row, np.eye(3), np.eye(4)[:3]):
        assert not is_rigid(m)
