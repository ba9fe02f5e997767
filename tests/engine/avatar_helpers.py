"""Tiny avatars for the avatar-file and export tests: a random one, and a sphere whose density we know exactly."""
from __future__ import annotations

import math

import torch

from engine.avatar import Avatar
from engine.decoder import DecoderConfig, TriplaneDecoder

C = 8  # channels: 6 feed colour, the last 2 density (channel 6 is the raw input of the density MLP)
K, A, B = 30.0, 3.0, 2.0  # density = exp(A · softplus(K (r0²/3 − f)) − B), f = |p − centre|² / 3


def random_avatar(seed: int = 0, resolution: int = 16, metadata: dict | None = None) -> Avatar:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    decoder = TriplaneDecoder(DecoderConfig(channels=C, hidden=16, geo_features=8)).eval()
    planes = torch.randn(3, C, resolution, resolution, generator=g) * 0.3
    return Avatar(planes, decoder, dict(metadata or {"seed": seed, "mode": "unconditional"}))


def sphere_avatar(centre=(0.15, -0.1, 0.05), radius: float = 0.5, resolution: int = 32) -> Avatar:
    """Channel 6 of each plane holds half the squared distance to `centre` in the plane's two axes, so the mean
    over the planes is f = |p − c|² / 3; the decoder makes σ a decreasing function of f (a sphere) and every
    colour 0.5 grey (all colour weights zero)."""
    axis = torch.linspace(-1, 1, resolution)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    c = torch.tensor(centre)
    planes = torch.zeros(3, C, resolution, resolution)
    for k, (col_axis, row_axis) in enumerate(((0, 1), (0, 2), (1, 2))):
        planes[k, 6] = ((cols - c[col_axis]) ** 2 + (rows - c[row_axis]) ** 2) / 2
    decoder = TriplaneDecoder(DecoderConfig(channels=C, hidden=16, geo_features=8)).eval()
    with torch.no_grad():
        for p in decoder.parameters():
            p.zero_()
        decoder.density_net[0].weight[0, 0] = -K
        decoder.density_net[0].bias[0] = K * radius ** 2 / 3
        decoder.density_net[2].weight[0, 0] = A
        decoder.density_net[2].bias[0] = -B
    return Avatar(planes, decoder, {"mode": "test-sphere", "centre": list(centre), "radius": radius})


def sphere_radius_at(threshold: float, radius: float = 0.5) -> float:
    """The radius where the sphere avatar's density equals `threshold` (σ = exp(A·softplus(h) − B))."""
    softplus = (math.log(threshold) + B) / A
    h = math.log(math.expm1(softplus))
    return math.sqrt(3 * (radius ** 2 / 3 - h / K))
