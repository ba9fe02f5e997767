"""How far a frozen decoder's colours reach: for each target colour, the closest colour it can emit from any
features inside the triplane box [-1, 1] (the aggregated features of a point; stage 2 can only move those).

Found by gradient descent from many random starts (features = tanh(u), so the box holds by construction), seen
from the front (view direction −z). Density is left free, so this bounds reach from above: a fitted surface
must also be opaque there.
"""
from __future__ import annotations

import torch

from engine.decoder import TriplaneDecoder

FRONT_DIRECTION = (0.0, 0.0, -1.0)


def closest_colours(decoder: TriplaneDecoder, targets: torch.Tensor, starts: int = 128, steps: int = 150,
                    lr: float = 0.1, seed: int = 0) -> torch.Tensor:
    """targets [K, 3] sRGB in [0, 1] → [K, 3]: the closest colour (L2) the decoder emits for each, per the
    best of `starts` descents of `steps` Adam steps."""
    targets = torch.as_tensor(targets, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    dim = decoder.config.feature_dim
    u = (torch.randn(len(targets) * starts, dim, generator=generator) * 1.5).requires_grad_(True)
    goal = targets.repeat_interleave(starts, 0)
    direction = torch.tensor(FRONT_DIRECTION).expand(len(u), 3)
    frozen = [p.requires_grad for p in decoder.parameters()]
    decoder.requires_grad_(False)
    try:
        optimizer = torch.optim.Adam([u], lr=lr)
        for _ in range(steps):
            _, rgb = decoder(torch.tanh(u), direction)
            loss = ((rgb - goal) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            _, rgb = decoder(torch.tanh(u), direction)
    finally:
        for p, flag in zip(decoder.parameters(), frozen):
            p.requires_grad_(flag)
    error = ((rgb - goal) ** 2).sum(-1).view(len(targets), starts)
    best = error.argmin(1)
    return rgb.view(len(targets), starts, 3)[torch.arange(len(targets)), best].detach()


__all__ = ["FRONT_DIRECTION", "closest_colours"]
