"""Held-out evaluation of fitted triplanes: PSNR / SSIM (and optionally the perceptual substitute) on test views."""
from __future__ import annotations

import torch

from engine.decoder import TriplaneDecoder
from engine.metrics import psnr, ssim
from engine.render import OccupancyGrid, RenderConfig, density_occupancy, render_image
from training.fit.data import AvatarViews


@torch.no_grad()
def render_views(planes: torch.Tensor, decoder: TriplaneDecoder, views: AvatarViews, config: RenderConfig,
                 occupancy: OccupancyGrid | None) -> torch.Tensor:
    """Renders of every view → [V, 3, H, W] over white."""
    height, width = views.size
    images = [render_image(planes, decoder, c2w, views.camera_angle_x, width, height, config, occupancy).rgb
              for c2w in views.c2w]
    return torch.stack(images).permute(0, 3, 1, 2).clamp(0, 1)


@torch.no_grad()
def evaluate(planes: torch.Tensor, decoder: TriplaneDecoder, views: AvatarViews, config: RenderConfig,
             perceptual=None, occupancy: OccupancyGrid | None = None) -> dict[str, float]:
    """Mean PSNR / SSIM (and perceptual distance if a PerceptualDistance is given) over the views.

    The triplane is rendered as any consumer would see it: with an occupancy grid from its own density, never
    with the visual hull of the training views (that would hide fog the triplane really contains). `occupancy`:
    that grid when the caller already has it (scoring one triplane on several view sets).
    """
    occupancy = occupancy if occupancy is not None else density_occupancy(planes, decoder)
    pred = render_views(planes, decoder, views, config, occupancy)
    target = views.on_white().permute(0, 3, 1, 2)
    scores = {"psnr": float(psnr(pred, target).mean()), "ssim": float(ssim(pred, target).mean())}
    if perceptual is not None:
        scores["perceptual"] = float(perceptual(pred, target).mean())
    return scores
