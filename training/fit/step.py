"""One optimisation step of fitting, shared by both stages."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.decoder import TriplaneDecoder
from engine.render import OccupancyGrid, render_rays
from engine.triplane import sample_triplane
from training.fit.config import FitConfig
from training.fit.data import RaySampler
from training.fit.losses import IWCState, triplane_regularisers


@dataclass
class StepResult:
    loss: float
    mse: float
    psnr: float
    evaluated: int  # samples that reached the decoder


def rendering_loss(planes, decoder, sampler: RaySampler, occupancy, config: FitConfig,
                   generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """Photometric MSE of a random ray batch (over white), and the number of decoder evaluations."""
    rays, target = sampler.sample(config.rays_per_step)
    out = render_rays(planes, decoder, rays, config.render, occupancy, perturb=True, generator=generator)
    return (out.rgb - target).pow(2).mean(), out.evaluated


def emptiness_loss(planes, decoder: TriplaneDecoder, occupancy: OccupancyGrid | None, config: FitConfig,
                   generator: torch.Generator) -> torch.Tensor:
    """Mean opacity of one sample step at random points the occupancy grid marks empty.

    Empty-space skipping means the photometric loss never sees those points; without this term they keep
    whatever density the initial triplane decodes to, and show up as fog once rendered without the grid.
    """
    if occupancy is None or not config.empty_weight:
        return planes.new_zeros(())
    points = empty_points(occupancy, config, generator, planes.device)
    if not len(points):
        return planes.new_zeros(())
    sigma, _ = decoder.density(sample_triplane(planes, points, decoder.config.aggregate))
    return step_opacity(sigma, config).mean()


def empty_points(occupancy: OccupancyGrid, config: FitConfig, generator: torch.Generator, device) -> torch.Tensor:
    """`empty_points` random points in the bound box (drawn on the CPU), keeping those outside the hull."""
    points = (torch.rand(config.empty_points, 3, generator=generator) * 2 - 1).to(device) * config.render.bound
    return points[~occupancy.lookup(points)]


def step_opacity(sigma: torch.Tensor, config: FitConfig) -> torch.Tensor:
    """Opacity of one stratified sample step through density `sigma`."""
    return 1.0 - torch.exp(-sigma * (2.0 * config.render.bound / config.render.samples))


def fit_step(planes: torch.Tensor, decoder: TriplaneDecoder, sampler: RaySampler, occupancy: OccupancyGrid | None,
             config: FitConfig, optimizers: list[torch.optim.Optimizer], generator: torch.Generator,
             iwc: IWCState | None = None) -> StepResult:
    mse, evaluated = rendering_loss(planes, decoder, sampler, occupancy, config, generator)
    loss = mse + triplane_regularisers(planes, config)
    loss = loss + config.empty_weight * emptiness_loss(planes, decoder, occupancy, config, generator)
    if iwc is not None and config.iwc_weight > 0:
        loss = loss + iwc.penalty(decoder, config.iwc_weight)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()
    mse_value = float(mse.detach())
    return StepResult(float(loss.detach()), mse_value, -10.0 * math.log10(max(mse_value, 1e-12)), evaluated)


def triplane_optimizer(planes: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([planes], lr=lr, betas=(0.9, 0.99), eps=1e-15)


def decoder_optimizer(decoder: TriplaneDecoder, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(decoder.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-15)
