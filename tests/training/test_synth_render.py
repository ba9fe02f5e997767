"""The generator's GL rasteriser: the camera convention in real pixels, true alpha, straight-alpha downsampling,
determinism. One headless (EGL) renderer for the whole module."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.cameras import focal_from_fov, project
from training.synth.attributes import sample_attributes
from training.synth.cameras import view_set
from training.synth.config import SynthConfig
from training.synth.gl_renderer import SceneRenderer, downsample_straight_alpha
from training.synth.mesh import Mesh, ellipsoid, rotation_z
from training.synth.scene import PLAIN, Part, Scene, build_scene

RES = 64
POINT = np.array([0.3, 0.2, -0.1])  # off-centre, so a flipped or transposed axis shows
WHITE = {"u_rgb": (1.0, 1.0, 1.0), "u_spec": 0.0, "u_shininess": 1.0}


@pytest.fixture(scope="module")
def renderer():
    r = SceneRenderer(RES, supersample=2)
    yield r
    r.release()


def _dot_scene(centre, radius: float = 0.05) -> Scene:
    return Scene([Part("dot", ellipsoid((radius,) * 3, centre=centre), PLAIN, dict(WHITE))], uniforms={})


def _expected_pixel(point: np.ndarray, c2w: np.ndarray, camera_angle_x: float, width: int, height: int):
    """NeRF-synthetic convention written out independently of engine.cameras: OpenGL camera axes (x right, y up,
    looking down -z), focal from the horizontal fov, v measured downward from the top edge."""
    x, y, z = (np.linalg.inv(c2w) @ np.append(point, 1.0))[:3]
    focal = 0.5 * width / np.tan(0.5 * camera_angle_x)
    return x / -z * focal + width / 2.0, height / 2.0 - y / -z * focal


def _alpha_centroid(rgba: np.ndarray) -> tuple[float, float]:
    """Alpha-weighted centroid in continuous pixel coordinates (pixel i covers [i, i+1): its centre is i + 0.5)."""
    alpha = rgba[..., 3].astype(np.float64)
    rows, cols = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    return (alpha * cols).sum() / alpha.sum() + 0.5, (alpha * rows).sum() / alpha.sum() + 0.5


@pytest.mark.parametrize("split", ["train", "test"])
def test_rendered_point_lands_where_the_cameras_say(renderer, split):
    config = SynthConfig(views=12, test_views=4, resolution=RES)
    views = view_set(config, split)
    assert len(views.frames) == (12 if split == "train" else 4)
    renderer.load(_dot_scene(POINT))
    positions = []
    for frame in views.frames:
        image = renderer.render(frame.c2w, views.camera_angle_x)
        assert image.shape == (RES, RES, 4) and image.dtype == np.uint8
        assert image[..., 3].sum() > 0, f"{frame.file_path}: the point is not in the picture"
        got = np.array(_alpha_centroid(image))
        expected = np.array(_expected_pixel(POINT, frame.c2w, views.camera_angle_x, RES, RES))
        engine = project(POINT[None], frame.c2w, views.camera_angle_x, RES, RES)[0]
        np.testing.assert_allclose(engine[:2], expected, atol=1e-9)  # engine.cameras agrees with the spelled-out maths
        assert engine[2] > 0
        # well under half a pixel: a half-pixel (pixel-centre) or one-pixel (flip) convention slip fails this
        assert np.abs(got - expected).max() < 0.25, f"{frame.file_path}: blob at {got}, cameras say {expected}"
        positions.append(got)
    assert np.ptp(np.array(positions), axis=0).min() > 2.0  # the views really differ: the point moves in the image


def test_blob_size_matches_the_focal_length(renderer):
    """A sphere of radius r at depth d covers about pi (r f / d)^2 pixels: the field of view is the one we claim."""
    config = SynthConfig(views=1, test_views=0, resolution=RES)
    views = view_set(config, "train")
    frame = views.frames[0]
    radius = 0.15
    renderer.load(_dot_scene(np.array([0.0, config.target_y, 0.0]), radius))
    image = renderer.render(frame.c2w, views.camera_angle_x)
    depth = config.radius
    focal = focal_from_fov(views.camera_angle_x, RES)
    expected_area = np.pi * (radius * focal / depth) ** 2
    area = image[..., 3].astype(np.float64).sum() / 255.0
    assert area == pytest.approx(expected_area, rel=0.08)
    assert _alpha_centroid(image) == (pytest.approx(RES / 2, abs=0.1), pytest.approx(RES / 2, abs=0.1))


@pytest.fixture(scope="module")
def avatar_renders(renderer):
    config = SynthConfig(views=4, test_views=2, resolution=RES)
    out = {}
    for seed in (0, 3):
        renderer.load(build_scene(sample_attributes(seed)))
        for split in ("train", "test"):
            views = view_set(config, split)
            for i, frame in enumerate(views.frames):
                out[(seed, split, i)] = renderer.render(frame.c2w, views.camera_angle_x)
    return out


def test_avatar_renders_have_true_alpha(avatar_renders):
    for key, image in avatar_renders.items():
        alpha = image[..., 3]
        assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0, key
        covered = (alpha > 0).mean()
        assert 0.10 < covered < 0.80, (key, covered)
        assert (alpha == 255).sum() > 0.05 * alpha.size, key  # a solid body
        partial = ((alpha > 0) & (alpha < 255)).sum()
        assert partial > 20, key  # anti-aliased silhouette and strands
        assert np.all(image[..., :3][alpha == 0] == 0)  # empty pixels carry no colour


def test_edge_pixels_keep_their_straight_colour(renderer):
    """A flat, evenly lit square seen face-on, tilted so its edges cut pixels at every coverage: partly covered
    pixels must keep the square's colour (straight alpha), not a darker premultiplied one."""
    corners = np.array([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, 0.3, 0.0], [-0.3, 0.3, 0.0]]) @ rotation_z(0.3).T
    square = Mesh(corners, np.tile([0.0, 0.0, 1.0], (4, 1)), np.array([[0, 1, 2], [0, 2, 3]], dtype=np.uint32))
    renderer.load(Scene([Part("square", square, PLAIN, {"u_rgb": (0.6, 0.3, 0.9), "u_spec": 0.0,
                                                        "u_shininess": 1.0})], uniforms={}))
    views = view_set(SynthConfig(views=1, test_views=0, resolution=RES), "train")
    image = renderer.render(views.frames[0].c2w, views.camera_angle_x)
    alpha = image[..., 3]
    partial = (alpha > 0) & (alpha < 255)
    assert partial.sum() > 20 and len(np.unique(alpha[partial])) >= 3  # edges at several coverage levels
    inside = image[alpha == 255][:, :3].astype(int)
    assert np.ptp(inside, axis=0).max() <= 1  # evenly lit
    colour = np.median(inside, axis=0)
    assert colour[2] > colour[0] > colour[1] > 20  # the square's hue, not saturated
    np.testing.assert_allclose(image[partial][:, :3], np.broadcast_to(colour, (partial.sum(), 3)), atol=1.5)


def test_downsample_averages_covered_colours_and_alpha_is_coverage():
    o = [0, 0, 0, 0]
    a, b, c = [200, 100, 0, 255], [100, 50, 20, 255], [10, 20, 30, 255]
    d, e = [101, 0, 255, 255], [100, 0, 254, 255]
    image = np.array([
        # block (0,0): two of four covered     block (0,1): all covered by c
        [a, o, c, c],
        [o, b, c, c],
        # block (1,0): empty                   block (1,1): three covered, rounding
        [o, o, d, e],
        [o, o, e, o],
    ], dtype=np.uint8)
    got = downsample_straight_alpha(image, 2)
    assert got.shape == (2, 2, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[0, 0], [150, 75, 10, 128])  # straight mean of a, b; alpha 2/4 (127.5 → 128)
    np.testing.assert_array_equal(got[0, 1], [10, 20, 30, 255])
    np.testing.assert_array_equal(got[1, 0], [0, 0, 0, 0])
    # (101+100+100)/3 = 100.33 → 100, (255+254+254)/3 = 254.33 → 254, alpha 3/4 of 255 = 191.25 → 191
    np.testing.assert_array_equal(got[1, 1], [100, 0, 254, 191])


def test_downsample_one_four_by_four_block():
    block = np.zeros((4, 4, 4), dtype=np.uint8)
    covered = [(0, 0), (0, 3), (1, 1), (2, 2), (3, 0), (3, 3)]
    for i, (r, c) in enumerate(covered):
        block[r, c] = [40 + 10 * i, 200, 7, 255]
    got = downsample_straight_alpha(block, 4)
    assert got.shape == (1, 1, 4)
    # colours 40..90 average 65; alpha 6/16 of 255 = 95.6 → 96
    np.testing.assert_array_equal(got[0, 0], [65, 200, 7, 96])
    np.testing.assert_array_equal(downsample_straight_alpha(np.zeros((4, 4, 4), np.uint8), 4)[0, 0], [0, 0, 0, 0])
    full = np.full((4, 4, 4), 255, np.uint8)
    full[..., :3] = [9, 8, 7]
    np.testing.assert_array_equal(downsample_straight_alpha(full, 4)[0, 0], [9, 8, 7, 255])
    np.testing.assert_array_equal(downsample_straight_alpha(block, 1), block)  # k = 1 is the identity


def test_rendering_is_deterministic(renderer):
    config = SynthConfig(views=3, test_views=0, resolution=RES)
    views = view_set(config, "train")
    renderer.load(build_scene(sample_attributes(5)))
    first = [renderer.render(f.c2w, views.camera_angle_x) for f in views.frames]
    renderer.load(_dot_scene(POINT))  # something else in between
    renderer.render(views.frames[0].c2w, views.camera_angle_x)
    renderer.load(build_scene(sample_attributes(5)))
    second = [renderer.render(f.c2w, views.camera_angle_x) for f in reversed(views.frames)][::-1]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])


def test_build_scene_is_a_pure_function_of_the_seed():
    one, two = build_scene(sample_attributes(11)), build_scene(sample_attributes(11))
    assert [p.name for p in one.parts] == [p.name for p in two.parts]
    for a, b in zip(one.parts, two.parts):
        assert a.material == b.material
        np.testing.assert_array_equal(a.mesh.vertex_array(), b.mesh.vertex_array())
        np.testing.assert_array_equal(a.mesh.indices, b.mesh.indices)
        assert a.uniforms.keys() == b.uniforms.keys()
        for k in a.uniforms:
            np.testing.assert_array_equal(a.uniforms[k], b.uniforms[k])
    assert one.uniforms == two.uniforms
    assert one.triangle_count > 1000
    other = build_scene(sample_attributes(12))
    assert other.triangle_count != one.triangle_count or any(
        not np.array_equal(a.mesh.positions, b.mesh.positions) for a, b in zip(one.parts, other.parts))


def test_sample_attributes_is_pure_and_seeds_differ():
    assert sample_attributes(42) == sample_attributes(42)
    assert sample_attributes(42).to_dict() == sample_attributes(42).to_dict()
    attrs = [sample_attributes(s) for s in range(8)]
    assert len({str(dataclasses.astuple(a)[1:]) for a in attrs}) == 8  # every seed differs beyond the seed field


def test_missing_moderngl_is_a_clear_error(monkeypatch):
    import sys

    from engine.errors import UserError
    from training.synth.gl_renderer import create_context

    for module in ("moderngl", "engine.render.gl"):  # imports fail as if moderngl were not installed
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match="needs the moderngl package"):
        create_context()
