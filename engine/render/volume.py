"""Volume rendering of a triplane with the shared decoder: stratified + importance sampling along each ray,
empty-space skipping with an occupancy grid (only occupied samples reach the decoder), alpha compositing.

Everything is differentiable with respect to the triplane and the decoder weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from engine.config import ConfigError, ConfigMixin
from engine.decoder import TriplaneDecoder
from engine.render.occupancy import OccupancyGrid
from engine.render.rays import Rays, camera_rays, intersect_aabb, intersect_box
from engine.triplane import sample_triplane

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "transparent": (0.0, 0.0, 0.0)}


@dataclass
class RenderConfig(ConfigMixin):
    samples: int = 64
    """Stratified samples per ray inside the bound box."""
    importance: int = 0
    """Extra samples per ray drawn from the coarse weights (0 = off)."""
    bound: float = 1.0
    """Half-size of the cube the triplane covers."""
    background: str = "white"
    """white, black or transparent (then rgb is premultiplied by alpha)."""
    chunk: int = 4096
    """Rays per chunk when rendering whole images."""

    PRESETS: ClassVar[dict] = {"tiny": {"samples": 64, "importance": 0}, "paper": {"samples": 128, "importance": 64}}

    def validate(self) -> None:
        if self.samples < 2 or self.importance < 0 or self.chunk < 1:
            raise ConfigError("samples must be ≥ 2, importance ≥ 0 and chunk ≥ 1")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"background must be one of {sorted(BACKGROUNDS)} (got {self.background!r})")


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [N, 3] (or [H, W, 3] for images), composited over the background
    alpha: torch.Tensor  # [N] accumulated opacity
    depth: torch.Tensor  # [N] expected depth of the visible surface (0 where alpha is 0)
    evaluated: int = 0  # samples that reached the decoder (the rest were skipped as empty)


@dataclass
class Field:
    """What the renderer asks of a radiance field: `features(points [n, 3], ray_index [n])` → decoder input
    [n, F], and optionally `occupied(points [N, S, 3])` → bool [N, S] (samples it may skip as empty).

    One triplane is `triplane_field`; the batched stage-2 fitter renders many avatars' rays in one pass with a
    field that looks each ray's avatar up.
    """

    features: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    occupied: Callable[[torch.Tensor], torch.Tensor] | None = None


def triplane_field(planes: torch.Tensor, aggregate: str, occupancy: OccupancyGrid | None = None) -> Field:
    return Field(lambda points, _rays: sample_triplane(planes, points, aggregate),
                 occupancy.lookup if occupancy is not None else None)


def _evaluate(field: Field, decoder: TriplaneDecoder, rays: Rays, t: torch.Tensor, active: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Density [N, S] and colour [N, S, 3] at distances t [N, S]; zero wherever the field says empty."""
    points = rays.origins[:, None] + rays.directions[:, None] * t[..., None]
    mask = active[:, None].expand_as(t)
    if field.occupied is not None:
        mask = mask & field.occupied(points)
    idx = mask.nonzero(as_tuple=True)
    sigma = t.new_zeros(t.shape)
    rgb = t.new_zeros(t.shape + (3,))
    if idx[0].numel():
        s, c = decoder(field.features(points[idx], idx[0]), rays.directions[idx[0]])
        sigma = sigma.index_put(idx, s)
        rgb = rgb.index_put(idx, c)
    return sigma, rgb, int(idx[0].numel())


def _weights(sigma: torch.Tensor, t: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    deltas = torch.diff(torch.cat([t, far[:, None]], -1), dim=-1).clamp(min=0.0)
    alpha = 1.0 - torch.exp(-sigma * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
    return alpha * transmittance


def _importance(t: torch.Tensor, weights: torch.Tensor, count: int, perturb: bool, generator) -> torch.Tensor:
    """Inverse-CDF samples [N, count] from piecewise-constant weights over the bins around t [N, S]."""
    edges = torch.cat([t[:, :1], 0.5 * (t[:, 1:] + t[:, :-1]), t[:, -1:]], -1)  # [N, S+1]
    pdf = weights.detach() + 1e-5
    cdf = torch.cumsum(pdf / pdf.sum(-1, keepdim=True), -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)
    if perturb:
        u = torch.rand(t.shape[0], count, generator=generator, device="cpu").to(t.device)
    else:
        u = ((torch.arange(count, device=t.device) + 0.5) / count).expand(t.shape[0], count)
    hi = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(1, cdf.shape[-1] - 1)
    lo = hi - 1
    c_lo, c_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
    e_lo, e_hi = edges.gather(-1, lo), edges.gather(-1, hi)
    frac = (u - c_lo) / (c_hi - c_lo).clamp(min=1e-8)
    return e_lo + frac * (e_hi - e_lo)


def render_rays(planes: torch.Tensor, decoder: TriplaneDecoder, rays: Rays, config: RenderConfig,
                occupancy: OccupancyGrid | None = None, perturb: bool = False,
                generator: torch.Generator | None = None) -> RenderOutput:
    """Render `rays` through `planes [3, C, R, R]` → RenderOutput with [N]-shaped results."""
    return render_field(triplane_field(planes, decoder.config.aggregate, occupancy), decoder, rays, config,
                        perturb, generator)


def stratified_jitter(count: int, config: RenderConfig, generator: torch.Generator | None) -> torch.Tensor:
    """The random offsets [count, samples] of perturbed stratified sampling (drawn on the CPU, so a seed gives
    the same samples on every device)."""
    return torch.rand(count, config.samples, generator=generator, device="cpu")


def render_field(field: Field, decoder: TriplaneDecoder, rays: Rays, config: RenderConfig, perturb: bool = False,
                 generator: torch.Generator | None = None, jitter: torch.Tensor | None = None) -> RenderOutput:
    """Render `rays` through any `Field`. `jitter` [N, samples]: the stratified offsets when the caller draws
    them itself (perturb is then implied); otherwise drawn from `generator` when perturbing."""
    near, far, hit = intersect_box(rays, config.bound)
    near, far = torch.where(hit, near, 0.0), torch.where(hit, far, 0.0)
    steps = torch.arange(config.samples, device=near.device, dtype=near.dtype)
    perturb = perturb or jitter is not None
    if jitter is None:
        jitter = (stratified_jitter(len(rays), config, generator) if perturb
                  else torch.full((len(rays), config.samples), 0.5))
    t = near[:, None] + (far - near)[:, None] * (steps + jitter.to(near.device)) / config.samples
    sigma, rgb, evaluated = _evaluate(field, decoder, rays, t, hit)
    if config.importance:
        extra_t = _importance(t, _weights(sigma, t, far), config.importance, perturb, generator)
        extra_sigma, extra_rgb, n = _evaluate(field, decoder, rays, extra_t.detach(), hit)
        evaluated += n
        t, order = torch.sort(torch.cat([t, extra_t.detach()], -1), -1)
        sigma = torch.cat([sigma, extra_sigma], -1).gather(-1, order)
        rgb = torch.cat([rgb, extra_rgb], -2).gather(-2, order[..., None].expand(*order.shape, 3))
    weights = _weights(sigma, t, far)
    alpha = weights.sum(-1)
    background = torch.tensor(BACKGROUNDS[config.background], device=rgb.device, dtype=rgb.dtype)
    colour = (weights[..., None] * rgb).sum(-2) + (1.0 - alpha)[:, None] * background
    depth = (weights * t).sum(-1) / alpha.clamp(min=1e-6)
    return RenderOutput(colour, alpha, torch.where(alpha > 1e-4, depth, torch.zeros_like(depth)), evaluated)


DENSITY_THRESHOLD = 0.5  # σ below this is < 1.6 % opacity per sample step at 64 samples over the box


@torch.no_grad()
def density_occupancy(planes: torch.Tensor, decoder: TriplaneDecoder, size: int = 64, samples_per_cell: int = 1,
                      threshold: float = DENSITY_THRESHOLD) -> OccupancyGrid:
    """The occupancy grid of a triplane from its own density: how any triplane is rendered when no training
    views exist (generated avatars, exports, evaluation)."""
    def density(points: torch.Tensor) -> torch.Tensor:
        return decoder.density(sample_triplane(planes, points, decoder.config.aggregate))[0]
    return OccupancyGrid.from_density(density, size, threshold=threshold, samples_per_cell=samples_per_cell,
                                      device=planes.device)


@torch.no_grad()
def render_image(planes: torch.Tensor, decoder: TriplaneDecoder, c2w: torch.Tensor, camera_angle_x: float,
                 width: int, height: int, config: RenderConfig, occupancy: OccupancyGrid | None = None,
                 ) -> RenderOutput:
    """A whole image, in chunks of `config.chunk` rays → rgb [H, W, 3], alpha [H, W], depth [H, W]."""
    rays = camera_rays(c2w.to(planes.dtype), camera_angle_x, width, height)
    rgb = torch.tensor(BACKGROUNDS[config.background], dtype=planes.dtype, device=planes.device).repeat(len(rays), 1)
    alpha, depth = rgb.new_zeros(len(rays)), rgb.new_zeros(len(rays))
    # rays that miss every occupied cell only see the background: skip them (the result is the same)
    live = torch.arange(len(rays), device=rgb.device)
    if occupancy is not None:
        box = occupancy.bounds()
        live = live[:0] if box is None else intersect_aabb(rays, *box)[2].nonzero()[:, 0]
    evaluated = 0
    for chunk in torch.split(live, config.chunk):
        out = render_rays(planes, decoder, rays[chunk], config, occupancy)
        rgb[chunk], alpha[chunk], depth[chunk] = out.rgb, out.alpha, out.depth
        evaluated += out.evaluated
    return RenderOutput(rgb.reshape(height, width, 3), alpha.reshape(height, width), depth.reshape(height, width),
                        evaluated)
