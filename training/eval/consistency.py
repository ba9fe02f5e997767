"""3D consistency of a generated triplane, as in the paper's Table 3 and Fig. 9.

Table 3 fits NeuS to 300 renders of each generated avatar and reports how well the reconstruction matches
(inconsistent renders, e.g. from a 2D refiner, cannot be explained by one 3D scene). Here the reconstruction is a
fresh triplane fitted with the model's frozen shared decoder (the stage-2 fitting of `training.fit`) to most of
`views` orbit renders, scored (PSNR / SSIM) on the renders it never saw.

Fig. 9 (epipolar-plane image, Bolles et al. 1987): one fixed image row rendered while the camera yaws smoothly,
one row per frame, stacked top to bottom → an image whose texture should be smooth streaks for a consistent avatar.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from engine.avatar import Avatar, orbit_camera
from engine.cameras import DEFAULT_FOV_DEGREES, DEFAULT_ORBIT, orbit_views
from engine.decoder import TriplaneDecoder
from engine.render import RenderConfig, camera_rays, density_occupancy, render_rays
from training.fit.config import FitConfig
from training.fit.data import AvatarViews
from training.fit.evaluate import evaluate
from training.fit.stage2 import fit_triplane, frozen


@dataclass
class ConsistencySettings:
    views: int = 24
    """Orbit renders of each avatar (engine.cameras.orbit_views: a spiral over the dataset rig's orbit)."""
    holdout: int = 4
    """Of those, renders kept out of the refit and scored (spread evenly over the spiral)."""
    size: int = 64
    """Render size in pixels (square)."""
    steps: int = 300
    """Optimisation steps of the refit (stage-2 style: frozen decoder, Adam on the triplane, lr decay)."""
    rays: int = 2048
    """Random rays per refit step."""
    samples: int = 64
    """Samples per ray, for the renders, the refit and its scoring."""
    seed: int = 0


@dataclass
class ConsistencyScores:
    psnr: float
    ssim: float
    fit_psnr: float  # on the renders it was fitted to: a low value means the step budget, not inconsistency
    train_views: int
    test_views: int
    seconds: float


def holdout_indices(views: int, holdout: int) -> list[int]:
    """`holdout` indices spread evenly over range(views) (never view 0, the frontal one)."""
    if not 0 < holdout < views:
        raise ValueError(f"holdout must be between 1 and views - 1 (got {holdout} of {views})")
    step = views / holdout
    return sorted({int(step * (i + 0.5)) for i in range(holdout)})


def orbit_renders(planes: torch.Tensor, decoder: TriplaneDecoder, views: int, size: int, samples: int = 64,
                  name: str = "render") -> AvatarViews:
    """`views` renders [V, size, size, 4] uint8 (straight, not premultiplied, alpha: like dataset PNGs)."""
    avatar = Avatar(planes, decoder)
    cams = torch.stack([torch.as_tensor(orbit_camera(az, el), dtype=torch.float32)
                        for az, el in orbit_views(DEFAULT_ORBIT, views)])
    # Avatar.render: premultiplied colour and alpha, both clamped to [0, 1] → divide the alpha back out
    rgba = torch.from_numpy(np.stack([avatar.render(c2w.numpy(), size, samples, background="transparent")
                                      for c2w in cams]))
    colour, alpha = rgba[..., :3], rgba[..., 3:]
    colour = torch.where(alpha > 1e-6, colour / alpha.clamp_min(1e-6), colour)
    images = (torch.cat([colour.clamp(0, 1), alpha], -1) * 255).round().to(torch.uint8)
    return AvatarViews(name, images, cams, math.radians(DEFAULT_FOV_DEGREES))


def subset(views: AvatarViews, indices: list[int]) -> AvatarViews:
    index = torch.as_tensor(indices, dtype=torch.long)
    return AvatarViews(views.name, views.rgba[index], views.c2w[index], views.camera_angle_x)


def refit_config(planes: torch.Tensor, decoder: TriplaneDecoder, settings: ConsistencySettings) -> FitConfig:
    """Stage-2 fitting settings for a triplane of the same shape as `planes`, with the given step budget."""
    render = RenderConfig(samples=settings.samples)
    return FitConfig(triplane_resolution=int(planes.shape[-1]), decoder=decoder.config, render=render,
                     rays_per_step=settings.rays, occupancy_size=64, stage2_steps=settings.steps,
                     seed=settings.seed, device=str(planes.device))


def refit(views: AvatarViews, decoder: TriplaneDecoder, config: FitConfig) -> torch.Tensor:
    """A fresh triplane [3, C, R, R] fitted to `views` with `decoder` frozen (stage-2 fitting, views in memory)."""
    generator = torch.Generator().manual_seed(config.seed)
    return fit_triplane(views.to(torch.device(config.device)), frozen(decoder), config, generator)


def refit_scores(renders: AvatarViews, decoder: TriplaneDecoder, config: FitConfig, holdout: int,
                 ) -> ConsistencyScores:
    """Refit a triplane to all renders but `holdout` of them (holdout_indices) and score it on those."""
    start = time.perf_counter()
    count = len(renders.rgba)
    test = holdout_indices(count, holdout)
    train = [i for i in range(count) if i not in test]
    fitted = refit(subset(renders, train), decoder, config)
    occupancy = density_occupancy(fitted, decoder)  # one grid for both view sets
    held_out = evaluate(fitted, decoder, subset(renders, test), config.render, occupancy=occupancy)
    seen = evaluate(fitted, decoder, subset(renders, train[:: max(len(train) // 4, 1)]), config.render,
                    occupancy=occupancy)
    return ConsistencyScores(held_out["psnr"], held_out["ssim"], seen["psnr"], len(train), len(test),
                             time.perf_counter() - start)


def consistency(planes: torch.Tensor, decoder: TriplaneDecoder, settings: ConsistencySettings,
                ) -> ConsistencyScores:
    """Render `settings.views` orbit views of `planes`, refit a triplane to all but `holdout` of them, and score
    the refit on the held-out renders (Table 3's protocol with a triplane instead of NeuS)."""
    start = time.perf_counter()
    renders = orbit_renders(planes, decoder, settings.views, settings.size, settings.samples)
    scores = refit_scores(renders, decoder, refit_config(planes, decoder, settings), settings.holdout)
    scores.seconds = time.perf_counter() - start
    return scores


@torch.no_grad()
def epipolar_image(planes: torch.Tensor, decoder: TriplaneDecoder, size: int, frames: int = 64,
                   sweep: float = 120.0, elevation: float = 0.0, row: float = 0.4, samples: int = 64,
                   ) -> np.ndarray:
    """Fig. 9: image row `round(row·(size−1))` of `frames` renders whose camera yaws smoothly over `sweep` degrees
    (centred on the frontal view) at `elevation`, stacked → uint8 [frames, size, 3] (over white). Only that row's
    rays are rendered."""
    if frames < 2 or not 0.0 <= row <= 1.0:
        raise ValueError(f"need frames ≥ 2 and row in [0, 1] (got {frames}, {row})")
    avatar = Avatar(planes, decoder)
    config = RenderConfig(samples=samples, background="white")
    fov = math.radians(DEFAULT_FOV_DEGREES)
    line = int(round(row * (size - 1)))
    lines = []
    for i in range(frames):
        azimuth = -sweep / 2 + sweep * i / (frames - 1)
        c2w = torch.as_tensor(orbit_camera(azimuth, elevation), dtype=torch.float32, device=planes.device)
        rays = camera_rays(c2w, fov, size, size)[line * size:(line + 1) * size]
        lines.append(render_rays(planes, decoder, rays, config, avatar.occupancy()).rgb)
    return (torch.stack(lines).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
