"""engine.render: rays and the bound box, the occupancy grid, and volume-rendering invariants (empty space →
background, an opaque slab → alpha 1 at the right depth, empty-space skipping changes nothing, gradients)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import engine.render.volume as volume
from engine.cameras import look_at, orbit_position
from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.render import OccupancyGrid, RenderConfig, Rays, camera_rays, pixel_rays, render_image, render_rays
from engine.render.rays import intersect_box
from engine.triplane import init_triplane

FOV = 0.6  # radians
R = 9


@pytest.fixture(autouse=True)
def no_grad():
    """Rendering tests run without autograd; the gradient test turns it back on."""
    with torch.no_grad():
        yield


def frontal_c2w(distance: float = 3.0) -> torch.Tensor:
    """Camera on +Z looking down -Z at the origin (identity rotation)."""
    c2w = torch.eye(4)
    c2w[2, 3] = distance
    return c2w


def tiny_decoder(seed: int = 0, **changes) -> TriplaneDecoder:
    torch.manual_seed(seed)
    return TriplaneDecoder(DecoderConfig(**{"channels": 8, "hidden": 16, "geo_features": 8, **changes}))


def tiny_planes(seed: int = 0, std: float = 0.5) -> torch.Tensor:
    return init_triplane(8, 16, std=std, generator=torch.Generator().manual_seed(seed))


def coordinate_planes(resolution: int = R) -> torch.Tensor:
    """[3, 2, R, R]: every plane holds its column coordinate in channel 0 and its row coordinate in channel 1,
    so with concat aggregation the features are [x, y | x, z | y, z]."""
    ramp = torch.linspace(-1.0, 1.0, resolution)
    planes = torch.zeros(3, 2, resolution, resolution)
    planes[:, 0] = ramp[None, :]
    planes[:, 1] = ramp[:, None]
    return planes


@dataclass
class _Cfg:
    aggregate: str = "concat"


class SlabDecoder:
    """Duck-typed decoder: a huge density where the z read back from plane XZ is within the slab |z| < half,
    nothing elsewhere; a constant colour."""

    def __init__(self, half: float = 0.2, colour=(0.2, 0.4, 0.6), density: float = 1e4) -> None:
        self.config = _Cfg()
        self.half, self.density = half, density
        self.colour = torch.tensor(colour)

    def __call__(self, features: torch.Tensor, directions: torch.Tensor):
        z = features[:, 3]  # concat: [XY x, XY y, XZ x, XZ z, YZ y, YZ z]
        sigma = torch.where(z.abs() < self.half, torch.full_like(z, self.density), torch.zeros_like(z))
        return sigma, self.colour.expand(len(z), 3)


def axis_ray(origin, direction) -> Rays:
    o = torch.tensor([origin], dtype=torch.float32)
    d = torch.tensor([direction], dtype=torch.float32)
    return Rays(o, d / d.norm(dim=-1, keepdim=True))


# ---- rays and the bound box --------------------------------------------------------------------------------
def test_centre_ray_points_along_minus_z_of_the_camera():
    c2w = torch.tensor(look_at(np.array([1.5, 2.0, -2.5]), np.zeros(3)), dtype=torch.float32)
    rays = camera_rays(c2w, FOV, 5, 5)
    assert len(rays) == 25
    centre = rays[12:13]
    torch.testing.assert_close(centre.directions[0], -c2w[:3, 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(centre.origins[0], c2w[:3, 3])
    torch.testing.assert_close(rays.directions.norm(dim=-1), torch.ones(25))
    # row-major, top row first: the first ray points up-left in camera space
    cam = rays.directions[0] @ c2w[:3, :3]
    assert cam[0] < 0 and cam[1] > 0 and cam[2] < 0


def test_corner_ray_matches_the_field_of_view():
    rays = camera_rays(frontal_c2w(), FOV, 4, 4)
    # the outer edge of the image is at tan(fov/2); pixel centres are half a pixel inside it
    right = rays.directions[7]  # row 1, last column: u = 3.5, i.e. 1.5 pixels right of the centre
    assert float(right[0] / -right[2]) == pytest.approx(0.75 * math.tan(FOV / 2), rel=1e-5)
    u = torch.tensor([4.0])  # the right edge itself
    edge = pixel_rays(frontal_c2w(), FOV, 4, 4, u, torch.tensor([2.0])).directions[0]
    assert float(edge[0] / -edge[2]) == pytest.approx(math.tan(FOV / 2), rel=1e-5)


def test_per_ray_camera_matrices_match_a_shared_one():
    c2w = torch.tensor(look_at(np.array([2.0, 1.0, 2.0]), np.zeros(3)), dtype=torch.float32)
    u, v = torch.tensor([0.5, 3.5, 1.5]), torch.tensor([2.5, 0.5, 3.5])
    shared = pixel_rays(c2w, FOV, 4, 4, u, v)
    per_ray = pixel_rays(c2w.expand(3, 4, 4), FOV, 4, 4, u, v)
    torch.testing.assert_close(shared.directions, per_ray.directions)
    torch.testing.assert_close(shared.origins, per_ray.origins)


def test_intersect_box_along_an_axis():
    near, far, hit = intersect_box(axis_ray((0.0, 0.0, -3.0), (0.0, 0.0, 1.0)))
    assert bool(hit[0]) and float(near[0]) == pytest.approx(2.0) and float(far[0]) == pytest.approx(4.0)
    near, far, hit = intersect_box(axis_ray((0.3, -0.2, 5.0), (0.0, 0.0, -1.0)), bound=0.5)
    assert bool(hit[0]) and float(near[0]) == pytest.approx(4.5) and float(far[0]) == pytest.approx(5.5)
    near, far, hit = intersect_box(axis_ray((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)))  # from inside
    assert bool(hit[0]) and float(near[0]) == 0.0 and float(far[0]) == pytest.approx(1.0)
    _, _, hit = intersect_box(axis_ray((0.0, 2.0, -3.0), (0.0, 0.0, 1.0)))  # passes above the box
    assert not bool(hit[0])
    _, _, hit = intersect_box(axis_ray((0.0, 0.0, 3.0), (0.0, 0.0, 1.0)))  # box behind the origin
    assert not bool(hit[0])


def test_intersect_box_diagonal():
    near, far, hit = intersect_box(axis_ray((-3.0, -3.0, -3.0), (1.0, 1.0, 1.0)))
    assert bool(hit[0])
    assert float(near[0]) == pytest.approx(2 * math.sqrt(3), rel=1e-5)
    assert float(far[0]) == pytest.approx(4 * math.sqrt(3), rel=1e-5)


# ---- render: empty space and background --------------------------------------------------------------------
@pytest.mark.parametrize("background, colour", [("white", 1.0), ("black", 0.0), ("transparent", 0.0)])
def test_empty_space_renders_the_background(background, colour):
    decoder = tiny_decoder(density_bias=-30.0)
    rays = camera_rays(frontal_c2w(), FOV, 6, 6)
    out = render_rays(tiny_planes(), decoder, rays, RenderConfig(samples=8, background=background))
    assert out.rgb.shape == (36, 3) and out.alpha.shape == (36,) and out.depth.shape == (36,)
    assert float(out.alpha.max()) < 1e-6
    torch.testing.assert_close(out.rgb, torch.full((36, 3), colour), atol=1e-5, rtol=0)
    assert float(out.depth.abs().max()) == 0.0
    assert out.evaluated == 36 * 8


def test_an_opaque_slab_renders_opaque_at_the_slab_face():
    samples = 64
    config = RenderConfig(samples=samples, background="white")
    rays = camera_rays(frontal_c2w(3.0), 0.2, 4, 4)  # narrow view: every ray crosses the slab
    out = render_rays(coordinate_planes(), SlabDecoder(half=0.2), rays, config)
    torch.testing.assert_close(out.alpha, torch.ones(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.rgb, torch.tensor([0.2, 0.4, 0.6]).expand(16, 3), atol=1e-4, rtol=0)
    # centre rays: the box spans t ∈ [2, 4]; the face z = 0.2 is at t = 2.8; samples are 2/64 apart
    spacing = 2.0 / samples
    centre = render_rays(coordinate_planes(), SlabDecoder(half=0.2), axis_ray((0, 0, 3.0), (0, 0, -1.0)), config)
    assert 2.8 - 1e-4 <= float(centre.depth[0]) <= 2.8 + spacing + 1e-4
    # every (oblique) ray: depth = distance along the ray to the face z = 0.2, within one sample spacing
    near, far, _ = intersect_box(rays)
    face = 2.8 / rays.directions[:, 2].abs()
    assert (out.depth >= face - 1e-4).all()
    assert (out.depth <= face + (far - near) / samples + 1e-4).all()


def test_transparent_background_is_premultiplied():
    rays = axis_ray((0, 0, 3.0), (0, 0, -1.0))
    out = render_rays(coordinate_planes(), SlabDecoder(), rays, RenderConfig(samples=16, background="transparent"))
    torch.testing.assert_close(out.rgb[0], torch.tensor([0.2, 0.4, 0.6]) * out.alpha[0], atol=1e-5, rtol=0)
    thin = SlabDecoder(half=0.2, density=1.0)  # semi-transparent: alpha well below 1
    out = render_rays(coordinate_planes(), thin, rays, RenderConfig(samples=16, background="transparent"))
    assert 0.1 < float(out.alpha[0]) < 0.9
    torch.testing.assert_close(out.rgb[0], torch.tensor([0.2, 0.4, 0.6]) * out.alpha[0], atol=1e-5, rtol=0)
    white = render_rays(coordinate_planes(), thin, rays, RenderConfig(samples=16, background="white"))
    torch.testing.assert_close(white.rgb[0], out.rgb[0] + (1 - out.alpha[0]), atol=1e-5, rtol=0)


def test_a_ray_missing_the_box_gets_the_background():
    rays = Rays(torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0], [3.0, 3.0, 3.0]]),
                torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]))
    out = render_rays(coordinate_planes(), SlabDecoder(), rays, RenderConfig(samples=8))
    assert float(out.alpha[1]) > 0.99  # the middle ray hits the slab
    for i in (0, 2):
        assert float(out.alpha[i]) == 0.0 and float(out.depth[i]) == 0.0
        torch.testing.assert_close(out.rgb[i], torch.ones(3))
    assert out.evaluated == 8  # only the hitting ray reaches the decoder


# ---- render: importance sampling ---------------------------------------------------------------------------
def test_importance_sampling_sorts_samples_and_sharpens_depth(monkeypatch):
    seen = []
    original = volume._weights

    def spy(sigma, t, far):
        seen.append(t.detach().clone())
        return original(sigma, t, far)

    monkeypatch.setattr(volume, "_weights", spy)
    rays = axis_ray((0, 0, 3.0), (0, 0, -1.0))
    coarse = render_rays(coordinate_planes(), SlabDecoder(), rays, RenderConfig(samples=8))
    seen.clear()
    fine = render_rays(coordinate_planes(), SlabDecoder(), rays, RenderConfig(samples=8, importance=16))
    assert fine.evaluated == 8 + 16
    final_t = seen[-1]
    assert final_t.shape == (1, 24)
    assert (torch.diff(final_t, dim=-1) >= 0).all()  # sorted along the ray
    assert float(final_t.min()) >= 2.0 - 1e-5 and float(final_t.max()) <= 4.0 + 1e-5
    assert float(fine.alpha[0]) > 0.999
    assert abs(float(fine.depth[0]) - 2.8) <= abs(float(coarse.depth[0]) - 2.8) + 1e-6
    assert abs(float(fine.depth[0]) - 2.8) < 2.0 / 8 / 2


def test_importance_sampling_with_perturbation_is_seeded():
    rays = camera_rays(frontal_c2w(), FOV, 4, 4)
    config = RenderConfig(samples=8, importance=8)
    planes, decoder = tiny_planes(), tiny_decoder()
    a = render_rays(planes, decoder, rays, config, perturb=True, generator=torch.Generator().manual_seed(1))
    b = render_rays(planes, decoder, rays, config, perturb=True, generator=torch.Generator().manual_seed(1))
    c = render_rays(planes, decoder, rays, config, perturb=True, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.rgb, b.rgb, atol=0, rtol=0)
    assert (a.rgb - c.rgb).abs().max() > 0


# ---- render: occupancy grid --------------------------------------------------------------------------------
def test_a_full_grid_renders_the_same_image_as_no_grid():
    planes, decoder = tiny_planes(), tiny_decoder(density_bias=1.0)
    config = RenderConfig(samples=12)
    rays = camera_rays(frontal_c2w(), FOV, 6, 6)
    plain = render_rays(planes, decoder, rays, config)
    gridded = render_rays(planes, decoder, rays, config, OccupancyGrid.full(8))
    torch.testing.assert_close(plain.rgb, gridded.rgb, atol=0, rtol=0)
    torch.testing.assert_close(plain.alpha, gridded.alpha, atol=0, rtol=0)
    assert plain.evaluated == gridded.evaluated == 36 * 12
    assert float(plain.alpha.mean()) > 0.05  # not trivially empty


def test_an_empty_grid_evaluates_nothing_and_renders_the_background():
    planes, decoder = tiny_planes(), tiny_decoder(density_bias=3.0)
    empty = OccupancyGrid(torch.zeros(8, 8, 8, dtype=torch.bool))
    rays = camera_rays(frontal_c2w(), FOV, 6, 6)
    out = render_rays(planes, decoder, rays, RenderConfig(samples=8, importance=4), empty)
    assert out.evaluated == 0
    torch.testing.assert_close(out.rgb, torch.ones(36, 3))
    assert float(out.alpha.max()) == 0.0


def test_a_partial_grid_skips_only_empty_cells():
    """Occupied only where z > 0: the slab's upper half is kept, the rest is skipped."""
    occupied = torch.zeros(8, 8, 8, dtype=torch.bool)
    occupied[:, :, 4:] = True
    grid = OccupancyGrid(occupied)
    rays = axis_ray((0, 0, 3.0), (0, 0, -1.0))
    out = render_rays(coordinate_planes(), SlabDecoder(), rays, RenderConfig(samples=16), grid)
    assert out.evaluated == 8  # the 8 samples with z > 0
    assert float(out.alpha[0]) > 0.99


def test_grid_lookup_and_cell_centres():
    occupied = torch.zeros(4, 4, 4, dtype=torch.bool)
    occupied[3, 0, 1] = True  # x ∈ [0.5, 1], y ∈ [-1, -0.5], z ∈ [-0.5, 0]
    grid = OccupancyGrid(occupied)
    pts = torch.tensor([[0.75, -0.75, -0.25], [0.75, -0.75, 0.25], [-0.75, -0.75, -0.25], [1.5, -0.75, -0.25]])
    assert grid.lookup(pts).tolist() == [True, False, False, False]
    centres = grid.cell_centres()
    assert centres.shape == (64, 3)
    torch.testing.assert_close(centres[3 * 16 + 0 * 4 + 1], torch.tensor([0.75, -0.75, -0.25]))
    assert grid.size == 4 and grid.fraction == pytest.approx(1 / 64)
    grown = grid.dilate(1)
    assert int(grown.occupied.sum()) == 2 * 2 * 3  # clipped at the x and y borders
    assert bool(grown.occupied[2, 1, 2]) and not bool(grown.occupied[1, 0, 1])


def sphere_views(radius: float = 0.5, resolution: int = 32):
    """Six axis-aligned cameras at distance 3 and their alpha masks of a sphere of `radius` at the origin."""
    eyes = [(3, 0, 0), (-3, 0, 0), (0, 0, 3), (0, 0, -3), (0, 3, 0.001), (0, -3, 0.001)]
    c2ws, alphas = [], []
    for eye in eyes:
        c2w = torch.tensor(look_at(np.array(eye, dtype=float), np.zeros(3)), dtype=torch.float32)
        rays = camera_rays(c2w, FOV, resolution, resolution)
        # distance of the ray (line) from the origin
        closest = rays.origins - (rays.origins * rays.directions).sum(-1, keepdim=True) * rays.directions
        alphas.append((closest.norm(dim=-1) < radius).float().reshape(resolution, resolution))
        c2ws.append(c2w)
    return torch.stack(c2ws), torch.stack(alphas)


def test_occupancy_from_masks_keeps_the_sphere_and_carves_the_corners():
    c2ws, alphas = sphere_views(0.5)
    assert 0.05 < float(alphas.mean()) < 0.5
    grid = OccupancyGrid.from_masks(c2ws, FOV, alphas, size=16, dilate=0)
    centres = grid.cell_centres()
    inside = centres.norm(dim=-1) < 0.45
    assert grid.occupied.reshape(-1)[inside].all()  # never carve the object
    corners = (centres.abs() > 0.8).all(-1)
    assert not grid.occupied.reshape(-1)[corners].any()  # the far corners are carved
    assert grid.fraction < 0.35
    dilated = OccupancyGrid.from_masks(c2ws, FOV, alphas, size=16)  # dilate=1 by default: a superset
    assert (dilated.occupied | ~grid.occupied).all() and dilated.fraction > grid.fraction


def test_occupancy_from_masks_of_nothing_carves_everything_seen():
    c2ws, alphas = sphere_views(0.5)
    grid = OccupancyGrid.from_masks(c2ws, FOV, torch.zeros_like(alphas), size=8, dilate=0)
    assert grid.fraction == 0.0


def test_occupancy_from_density_thresholds():
    ball = lambda p: (p.norm(dim=-1) < 0.5).float() * 10.0  # noqa: E731
    grid = OccupancyGrid.from_density(ball, size=16, threshold=0.5)
    centres = grid.cell_centres()
    assert grid.occupied.reshape(-1)[centres.norm(dim=-1) < 0.4].all()
    assert not grid.occupied.reshape(-1)[centres.norm(dim=-1) > 0.9].any()
    assert OccupancyGrid.from_density(ball, size=16, threshold=20.0).fraction == 0.0  # threshold above the max
    assert OccupancyGrid.from_density(lambda p: torch.zeros(len(p)), size=8).fraction == 0.0
    assert OccupancyGrid.from_density(lambda p: torch.ones(len(p)), size=8).fraction == 1.0


def test_occupancy_from_a_decoder_density():
    planes, decoder = tiny_planes(), tiny_decoder(density_bias=-30.0)
    from engine.triplane import sample_triplane

    fn = lambda p: decoder.density(sample_triplane(planes, p))[0]  # noqa: E731
    assert OccupancyGrid.from_density(fn, size=8).fraction == 0.0


# ---- render: gradients and images ----------------------------------------------------------------------------
@torch.enable_grad()
def test_gradients_reach_the_planes_and_every_decoder_parameter():
    planes = torch.nn.Parameter(tiny_planes())
    decoder = tiny_decoder(density_bias=0.5)
    rays = camera_rays(frontal_c2w(), FOV, 6, 6)
    out = render_rays(planes, decoder, rays, RenderConfig(samples=8, importance=4), perturb=True,
                      generator=torch.Generator().manual_seed(0))
    target = torch.rand(36, 3, generator=torch.Generator().manual_seed(1))
    ((out.rgb - target).pow(2).mean() + out.depth.mean() * 1e-3).backward()
    assert planes.grad is not None and float(planes.grad.abs().sum()) > 0
    for name, p in decoder.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
        assert torch.isfinite(p.grad).all(), name


def test_render_image_chunking_does_not_change_the_image():
    planes, decoder = tiny_planes(), tiny_decoder(density_bias=1.0)
    c2w = torch.tensor(look_at(np.array(orbit_position(30.0, 10.0, 3.0, np.zeros(3))), np.zeros(3)),
                       dtype=torch.float32)
    one = render_image(planes, decoder, c2w, FOV, 8, 6, RenderConfig(samples=8, chunk=4096))
    many = render_image(planes, decoder, c2w, FOV, 8, 6, RenderConfig(samples=8, chunk=7))
    assert one.rgb.shape == (6, 8, 3) and one.alpha.shape == (6, 8) and one.depth.shape == (6, 8)
    torch.testing.assert_close(one.rgb, many.rgb, atol=1e-6, rtol=0)
    torch.testing.assert_close(one.alpha, many.alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(one.depth, many.depth, atol=1e-5, rtol=0)
    assert one.evaluated == many.evaluated == 48 * 8
    # and it equals render_rays over the same rays
    flat = render_rays(planes, decoder, camera_rays(c2w, FOV, 8, 6), RenderConfig(samples=8))
    torch.testing.assert_close(one.rgb.reshape(-1, 3), flat.rgb, atol=1e-6, rtol=0)


def test_render_config_validation():
    from engine.config import ConfigError

    for bad in ({"samples": 1}, {"importance": -1}, {"chunk": 0}, {"background": "green"}):
        with pytest.raises(ConfigError):
            RenderConfig(**bad)
