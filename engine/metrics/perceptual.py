"""LPIPS-style perceptual distance on ImageNet MobileNetV2 features — a SUBSTITUTE for LPIPS, not LPIPS.

LPIPS proper (Zhang et al. 2018, Eq. 1) compares unit-normalised AlexNet/VGG activations through learned per-channel
linear weights. Neither those backbones nor the learned weights can be had offline here (DESIGN.md, "Pretrained
weights that can be had offline"), so this module keeps LPIPS's form with what is available:

    d(x, y) = 1/|L| Σ_l  mean_{h,w} ‖ f̂_l(x)_{hw} − f̂_l(y)_{hw} ‖²,   f̂ = f / ‖f‖ over channels,

with f_l the ImageNet MobileNetV2 stage outputs (`MobileNetV2Features`) and equal weights on every channel and
stage (LPIPS's "lin" layers replaced by ones). Each stage term lies in [0, 4]. Numbers are NOT comparable with
published LPIPS values: wherever a figure from this module is reported, print `NAME` beside it.

Loading real LPIPS (a local AlexNet/VGG checkpoint plus the LPIPS linear-layer weights the user points to) is not
implemented yet; it would be a separate class with the same `forward(pred, target) -> [B]` contract.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .image import as_image_batch
from .mobilenet import MobileNetV2Features, StageName, Weights

NAME = "MobileNetV2 feature distance (LPIPS substitute)"
DEFAULT_STAGES: tuple[StageName, ...] = ("s2", "s4", "s8", "s16")


def unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Scale each feature vector `[B, C, H, W]` to unit length over C; `eps` keeps the gradient finite at 0."""
    return f * torch.rsqrt(f.square().sum(1, keepdim=True) + eps)


def feature_distance(features: list[torch.Tensor], batch: int, eps: float = 1e-10) -> torch.Tensor:
    """LPIPS's form with equal weights: each feature map [2B, C, H, W] holds pred (first B) then target; → [B]."""
    terms = []
    for f in features:
        f = unit_normalize(f, eps)
        terms.append((f[:batch] - f[batch:]).square().sum(1).flatten(1).mean(1))
    return torch.stack(terms, 0).mean(0)


class PerceptualDistance(nn.Module):
    """MobileNetV2 feature distance (LPIPS substitute); see the module docstring for the formula and caveats.

    forward(pred, target): images `[B, 3, H, W]` (or `[3, H, W]`) in `[0, 1]` → distance `[B]` (0-d unbatched);
    0 for identical images, symmetric, differentiable w.r.t. both inputs (usable as a training loss; no
    `torch.no_grad` inside — wrap calls in it yourself for evaluation).
    The backbone is frozen (`requires_grad=False`) and stays in eval mode even under `.train()`, so its BatchNorm
    statistics never change. `weights=None` gives a randomly initialised backbone (tests only: not perceptual).
    Inputs should be at least 32×32 for the default stages (the "s16" map is then 2×2).
    """

    NAME = NAME

    def __init__(self, weights: Weights = "imagenet", stages: Sequence[StageName] = DEFAULT_STAGES,
                 eps: float = 1e-10):
        super().__init__()
        self.backbone = MobileNetV2Features(weights, stages)
        self.backbone.requires_grad_(False)
        self.eps = eps
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualDistance":
        """Always stays in eval mode: the frozen BatchNorm layers must keep their ImageNet statistics."""
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target, unbatched = as_image_batch(pred, target)
        b = pred.shape[0]
        feats = self.backbone(torch.cat([pred, target], 0))  # one pass; eval-mode BN keeps the halves independent
        out = feature_distance(list(feats.values()), b, self.eps)
        return out[0] if unbatched else out


__all__ = ["NAME", "DEFAULT_STAGES", "PerceptualDistance", "feature_distance", "unit_normalize"]
