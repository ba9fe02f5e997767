"""engine.render.gl: the GL ray-marcher reproduces the torch renderer (exact path) and approximates it (fast path),
draws into the caller's framebuffer, compiles each decoder once, and refuses bad input.

Decoders are tiny (GLSL compile time grows with the MLP) and the scene is a blob: the first density channel of
every plane holds 0.5 − 1.5(u² + v²) and the density head is set so σ is large inside radius ~0.7 and below the
occupancy threshold outside, with soft edges, empty cells and random features everywhere else.
"""
from __future__ import annotations

import copy
import math

import moderngl
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.avatar import orbit_camera
from engine.cameras import DEFAULT_FOV_DEGREES
from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.errors import UserError
from engine.render import OccupancyGrid, RenderConfig, density_occupancy, render_image
from engine.render.gl import GLUnavailable, TriplaneGLRenderer, standalone_context
from engine.triplane import init_triplane

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WIDTH, HEIGHT = 40, 32  # not square: catches swapped axes and flipped rows
FRONT, SIDE = orbit_camera(0.0, 0.0), orbit_camera(50.0, 25.0)


@pytest.fixture(scope="module")
def ctx():
    context = standalone_context()  # no GL is a failure: the studio and synth need it (make install-system)
    yield context
    context.release()


@pytest.fixture(scope="module")
def renderer(ctx):
    r = TriplaneGLRenderer(ctx)
    yield r
    r.release()


def blob_decoder(seed: int = 0, **changes) -> TriplaneDecoder:
    """Random weights except the density output: σ = exp(2·softplus(8·f) − 3) for the first density feature f."""
    torch.manual_seed(seed)
    config = {"channels": 8, "hidden": 8, "geo_features": 4, "frequencies": 1, **changes}
    decoder = TriplaneDecoder(DecoderConfig(**config)).eval()
    with torch.no_grad():
        first, second = decoder.density_net[0], decoder.density_net[2]
        first.weight[0].zero_()
        first.weight[0, 0] = 8.0  # encoding input 0 is the raw first density feature
        first.bias[0] = 0.0
        second.weight[0].zero_()
        second.weight[0, 0] = 2.0
        second.bias[0] = -3.0
    return decoder


def blob_planes(decoder: TriplaneDecoder, resolution: int = 16, smooth: bool = False, seed: int = 0) -> torch.Tensor:
    channels = decoder.config.channels
    generator = torch.Generator().manual_seed(seed)
    if smooth:
        coarse = torch.rand(3, channels, 4, 4, generator=generator) * 2 - 1
        planes = F.interpolate(coarse, size=(resolution, resolution), mode="bicubic", align_corners=True)
    else:
        planes = init_triplane(channels, resolution, std=0.6, generator=generator)
    ramp = torch.linspace(-1.0, 1.0, resolution)
    planes[:, decoder.colour_in % channels] = 0.5 - 1.5 * (ramp[None, :] ** 2 + ramp[:, None] ** 2)
    return planes


def torch_render(planes, decoder, c2w, occupancy, background: str = "white", width=WIDTH, height=HEIGHT):
    out = render_image(planes, decoder, torch.as_tensor(c2w, dtype=torch.float32), math.radians(DEFAULT_FOV_DEGREES),
                       width, height, RenderConfig(samples=64, importance=0, background=background), occupancy)
    return torch.cat([out.rgb, out.alpha[..., None]], -1).clamp(0, 1).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10.0 * np.log10(max(float(np.mean((a - b) ** 2)), 1e-20)))


def assert_matches(image: np.ndarray, reference: np.ndarray) -> None:
    """PSNR ≥ 40 dB, and all but a rare pixel within 1e-3: a sample lying within float rounding of an occupancy
    cell's face can fall into the neighbouring cell on one side only."""
    diff = np.abs(image - reference)
    assert psnr(image, reference) >= 40.0
    assert np.mean(diff > 1e-3) <= 0.002, f"max abs diff {diff.max():.2e}"


@pytest.fixture(scope="module")
def blob():
    decoder = blob_decoder()
    planes = blob_planes(decoder)
    return planes, decoder, density_occupancy(planes, decoder, size=32)


@pytest.mark.parametrize("changes", [{}, {"aggregate": "sum", "view_dependent": False}, {"aggregate": "concat"}],
                         ids=["mean-view-dependent", "sum-view-independent", "concat"])
def test_exact_path_reproduces_torch_renderer(renderer, changes):
    decoder = blob_decoder(**changes)
    planes = blob_planes(decoder)
    occupancy = density_occupancy(planes, decoder, size=32)
    assert 0.05 < occupancy.fraction < 0.9  # both empty and occupied cells are exercised
    renderer.set_avatar(planes, decoder, occupancy, bake_resolution=16)
    for c2w in (FRONT, SIDE):
        reference = torch_render(planes, decoder, c2w, occupancy)
        assert 0.2 < reference[..., 3].mean() < 0.9  # the blob is in view, with background around it
        assert_matches(renderer.render_array(c2w, WIDTH, HEIGHT), reference)


def test_black_background_matches_transparent_torch_render(renderer, blob):
    planes, decoder, occupancy = blob
    renderer.set_avatar(planes, decoder, occupancy, bake_resolution=16)
    image = renderer.render_array(SIDE, WIDTH, HEIGHT, background=(0.0, 0.0, 0.0))
    reference = torch_render(planes, decoder, SIDE, occupancy, background="transparent")
    assert_matches(image, reference)
    assert np.all(image[..., :3] <= image[..., 3:] + 1e-5)  # premultiplied: colour never exceeds coverage


def test_default_occupancy_is_the_avatars_own(renderer, blob):
    planes, decoder, _ = blob
    renderer.set_avatar(planes, decoder, bake_resolution=16)
    reference = torch_render(planes, decoder, FRONT, density_occupancy(planes, decoder, samples_per_cell=2))
    assert_matches(renderer.render_array(FRONT, WIDTH, HEIGHT), reference)


def test_fast_path_approximates_exact_path(renderer):
    decoder = blob_decoder()
    planes = blob_planes(decoder, resolution=32, smooth=True)
    renderer.set_avatar(planes, decoder, density_occupancy(planes, decoder, size=32), bake_resolution=32)
    exact = renderer.render_array(FRONT, 64, 64)
    fast = renderer.render_array(FRONT, 64, 64, mode="fast")
    assert psnr(fast, exact) >= 30.0  # measured here: 45 dB
    assert np.abs(fast[..., 3] - exact[..., 3]).mean() < 0.02


def test_empty_scenes_render_the_background(renderer, blob):
    planes, decoder, _ = blob
    background = (0.2, 0.4, 0.6)
    renderer.clear_avatar()
    assert not renderer.has_avatar
    expected = np.broadcast_to(np.array([*background, 0.0], np.float32), (HEIGHT, WIDTH, 4))
    np.testing.assert_allclose(renderer.render_array(FRONT, WIDTH, HEIGHT, background=background), expected)
    empty = OccupancyGrid(torch.zeros(8, 8, 8, dtype=torch.bool))
    renderer.set_avatar(planes, decoder, empty, bake_resolution=8)
    assert renderer.has_avatar
    for mode in ("exact", "fast"):
        image = renderer.render_array(FRONT, WIDTH, HEIGHT, mode=mode, background=background)
        np.testing.assert_allclose(image, expected, atol=1e-6)


def alpha_centroid(image: np.ndarray) -> np.ndarray:
    """(row, column) of the coverage's centre of mass."""
    alpha = image[..., 3]
    rows, columns = np.indices(alpha.shape)
    return np.array([(alpha * rows).sum(), (alpha * columns).sum()]) / alpha.sum()


def test_moving_the_camera_moves_the_image_the_right_way(renderer, blob):
    planes, decoder, occupancy = blob
    renderer.set_avatar(planes, decoder, occupancy, bake_resolution=16)
    right, up = FRONT.copy(), FRONT.copy()
    right[0, 3] += 0.3  # the frontal camera's axes are the world's
    up[1, 3] += 0.3
    centre = alpha_centroid(renderer.render_array(FRONT, WIDTH, HEIGHT))
    for c2w, shift in ((right, (0.0, -1.0)), (up, (1.0, 0.0))):  # the avatar moves left / down (row 0 = top)
        for mode in ("exact", "fast"):
            moved = alpha_centroid(renderer.render_array(c2w, WIDTH, HEIGHT, mode=mode)) - centre
            along, across = np.dot(moved, shift), moved[0] * shift[1] - moved[1] * shift[0]
            assert along > 2.0 and abs(across) < 0.5, (mode, moved)


def test_looking_away_shows_nothing(renderer, blob):
    planes, decoder, occupancy = blob
    renderer.set_avatar(planes, decoder, occupancy, bake_resolution=16)
    away = FRONT.copy()
    away[:3, 0] *= -1  # turned around: looks down +Z, away from the box
    away[:3, 2] *= -1
    for mode in ("exact", "fast"):
        assert np.all(renderer.render_array(away, WIDTH, HEIGHT, mode=mode)[..., 3] == 0.0)


def test_renders_into_the_callers_framebuffer_and_viewport(ctx, renderer, blob):
    planes, decoder, occupancy = blob
    renderer.set_avatar(planes, decoder, occupancy, bake_resolution=16)
    texture = ctx.texture((64, 48), 4, dtype="f4")
    target = ctx.framebuffer(color_attachments=[texture])
    target.clear(0.5, 0.5, 0.5, 0.5)
    renderer.render(SIDE, WIDTH, HEIGHT, framebuffer=target)
    pixels = np.frombuffer(target.read(components=4, dtype="f4"), np.float32).reshape(48, 64, 4)
    np.testing.assert_allclose(pixels[:HEIGHT, :WIDTH][::-1], renderer.render_array(SIDE, WIDTH, HEIGHT), atol=1e-6)
    assert np.all(pixels[HEIGHT:] == 0.5) and np.all(pixels[:, WIDTH:] == 0.5)  # outside the viewport: untouched
    target.release()
    texture.release()


def test_a_known_decoder_is_not_compiled_again(renderer, blob):
    planes, decoder, occupancy = blob
    renderer.set_avatar(planes, decoder, occupancy, bake_resolution=16)
    compiled = renderer.compiles
    other_planes = blob_planes(decoder, resolution=24, seed=5).double()  # any dtype and resolution
    renderer.set_avatar(other_planes, copy.deepcopy(decoder), occupancy, bake_resolution=16)
    assert renderer.compiles == compiled
    assert_matches(renderer.render_array(FRONT, WIDTH, HEIGHT), torch_render(other_planes.float(), decoder, FRONT,
                                                                             occupancy))
    changed = copy.deepcopy(decoder)
    with torch.no_grad():
        changed.colour_net[-1].weight.mul_(2.0)
    renderer.set_avatar(planes, changed, occupancy, bake_resolution=16)
    assert renderer.compiles == compiled + 1


@pytest.mark.parametrize("call, message", [
    (lambda r, p, d: r.set_avatar(p[:2], d), "planes must be"),
    (lambda r, p, d: r.set_avatar(p[:, :4], d), "channels"),
    (lambda r, p, d: r.set_avatar(p, d, bake_resolution=4), "bake_resolution"),
    (lambda r, p, d: r.render_array(FRONT, 0, HEIGHT), "width"),
    (lambda r, p, d: r.render_array(FRONT, WIDTH, 4097), "height"),
    (lambda r, p, d: r.render_array(FRONT, 32.0, HEIGHT), "width"),
    (lambda r, p, d: r.render_array(FRONT, WIDTH, HEIGHT, mode="slow"), "mode"),
    (lambda r, p, d: r.render_array(FRONT[:3], WIDTH, HEIGHT), "c2w"),
    (lambda r, p, d: r.render_array(FRONT, WIDTH, HEIGHT, samples=1), "samples"),
    (lambda r, p, d: r.render_array(FRONT, WIDTH, HEIGHT, background=(2.0, 0.0, 0.0)), "background"),
    (lambda r, p, d: r.render_array(FRONT, WIDTH, HEIGHT, fov_degrees=180.0), "fov_degrees"),
])
def test_bad_input_is_refused(renderer, blob, call, message):
    planes, decoder, _ = blob
    with pytest.raises(ValueError, match=message):
        call(renderer, planes, decoder)


def test_no_gl_is_one_clear_user_error(monkeypatch):
    def refuse(**kwargs):
        raise RuntimeError("no display\nmore detail")

    monkeypatch.setattr(moderngl, "create_standalone_context", refuse)
    with pytest.raises(GLUnavailable, match="no OpenGL 3.3 context could be created .egl: no display; default: no "
                                            "display.") as caught:
        standalone_context()
    assert isinstance(caught.value, UserError)


def test_unbind_current_egl_leaves_no_context_current():
    import threading

    from engine.render.gl import unbind_current_egl
    from engine.render.gl.context import egl_context_current

    seen = []

    def on_a_fresh_thread():  # no windowed (GLX) context of an earlier test can be current here
        ctx = standalone_context()
        ctx.clear()  # use it, so it is current
        seen.extend([egl_context_current(), unbind_current_egl(), egl_context_current(), unbind_current_egl()])
        ctx.release()

    thread = threading.Thread(target=on_a_fresh_thread)
    thread.start()
    thread.join()
    # current while used; unbound once (True), then nothing current and nothing left to unbind
    assert seen == [True, True, False, False]
