"""Conditional augmentation of the upsampler's low-resolution input: the base model's samples are never as
clean as downsampled fits, so in training the low-res triplane is degraded (blur, down/up-sampling, noise)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(planes: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, R, R] (reflect padding so plane borders keep their values)."""
    if sigma <= 0:
        return planes
    radius = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=planes.dtype, device=planes.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = planes.shape[1]
    padded = F.pad(planes, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def degrade(lowres: torch.Tensor, generator: torch.Generator, prob: float, max_noise: float, max_blur: float,
            ) -> torch.Tensor:
    """Randomly degrade each low-res triplane [B, 3, C, r, r] (raw values) with probability `prob`."""
    out = []
    std = lowres.std().clamp(min=1e-6)
    for planes in lowres:
        if torch.rand((), generator=generator).item() >= prob:
            out.append(planes)
            continue
        three, c, r, _ = planes.shape
        x = planes.reshape(three * 1, c, r, r)
        x = gaussian_blur(x, float(torch.rand((), generator=generator)) * max_blur)
        if torch.rand((), generator=generator).item() < 0.5:  # lose detail: down by 2, back up
            x = F.interpolate(F.avg_pool2d(x, 2), size=(r, r), mode="bilinear", align_corners=False)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        x = x + noise * std * float(torch.rand((), generator=generator)) * max_noise
        out.append(x.reshape(three, c, r, r).clamp(-1.0, 1.0))
    return torch.stack(out)
