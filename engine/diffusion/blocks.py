"""Building blocks of the triplane U-Net that work on a rolled-out triplane `[B, C, R, 3R]` (see `rollout.py`).

- `PlaneConv2d`: a Conv2d that pads each plane on its own, so no texel sees the neighbouring plane across a seam.
- `aware_features` / `Aware3DConv`: Rodin's 3D-aware convolution (Rodin §3.2, Fig. 3): every plane is given the
  other two planes' features averaged along the axis it does not share with them.
- `SelfAttentionBlock` / `CrossAttentionBlock`: residual attention over all texels of all three planes (so the
  planes talk to each other), the cross variant against portrait tokens (RodinHD §3.3).
- `PortraitTokenizer`: multi-scale portrait features → a few tokens per scale + one global token, with learned
  null tokens for dropped conditions (classifier-free guidance).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from engine.diffusion.rollout import fold_planes, roll_in, roll_out, unfold_planes


def norm_groups(channels: int, max_groups: int = 32) -> int:
    """The largest group count ≤ max_groups that divides `channels` (GroupNorm needs an exact division)."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


class PlaneConv2d(nn.Conv2d):
    """nn.Conv2d on a rolled-out triplane [B, C, H, 3W] that convolves and pads each plane separately.

    Same parameters (and state-dict keys) as nn.Conv2d; only the forward folds the planes into the batch, so a
    plane's border is zero-padded instead of reading the adjacent plane's opposite border.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_planes(super().forward(fold_planes(x)))


def planewise(module: nn.Module) -> nn.Module:
    """Replace, in place, every spatial (kernel > 1) nn.Conv2d inside `module` by a same-shaped `PlaneConv2d`."""
    for name, child in module.named_children():
        if type(child) is nn.Conv2d and child.kernel_size != (1, 1):
            conv = PlaneConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                               child.padding, child.dilation, child.groups, child.bias is not None)
            setattr(module, name, conv)
        else:
            planewise(child)
    return module


def aware_features(x: torch.Tensor) -> torch.Tensor:
    """Rolled-out triplane [B, C, R, 3R] → [B, 3C, R, 3R]: each plane's own features followed by the other two
    planes' (in XY, XZ, YZ order) mean-pooled along their non-shared axis and broadcast back (Rodin Fig. 3).

    Plane layouts: XY rows=y cols=x; XZ rows=z cols=x; YZ rows=z cols=y. Pooling dim -2 averages over rows and
    leaves a row vector [.., 1, R] indexed by the column axis; dim -1 leaves a column vector [.., R, 1].
    """
    if x.dim() != 4:
        raise ValueError(f"expected a batched rolled-out triplane [B, C, R, 3R], got {list(x.shape)}")
    xy, xz, yz = roll_in(x).unbind(1)  # each [B, C, R, R]
    full = xy.shape
    # XY (cols x, rows y): XZ averaged over z gives f(x), a row vector; YZ averaged over z gives f(y) as a row
    # vector, transposed into a column vector so that it is indexed by XY's row coordinate y.
    on_xy = [xy, xz.mean(-2, keepdim=True).expand(full), yz.mean(-2, keepdim=True).transpose(-1, -2).expand(full)]
    # XZ (cols x, rows z): XY averaged over y gives f(x) (row vector); YZ averaged over y gives f(z) (column).
    on_xz = [xz, xy.mean(-2, keepdim=True).expand(full), yz.mean(-1, keepdim=True).expand(full)]
    # YZ (cols y, rows z): XY averaged over x gives f(y) as a column, transposed to a row vector indexed by YZ's
    # column coordinate y; XZ averaged over x gives f(z) (column).
    on_yz = [yz, xy.mean(-1, keepdim=True).transpose(-1, -2).expand(full), xz.mean(-1, keepdim=True).expand(full)]
    planes = [torch.cat(feats, 1) for feats in (on_xy, on_xz, on_yz)]
    return roll_out(torch.stack(planes, 1))


class Aware3DConv(nn.Module):
    """Rodin's 3D-aware convolution: `aware_features` (C → 3C) then a per-plane 3×3 conv 3C → out_ch.

    [B, in_ch, R, 3R] → [B, out_ch, R, 3R]. Drop-in for the first conv of a ResNet block.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_ch, out_ch
        self.conv = PlaneConv2d(3 * in_ch, out_ch, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(aware_features(x))


def zero_init_(layer: nn.Linear | nn.Conv2d) -> None:
    """Zero a layer's weight and bias so the residual branch it ends starts as the identity."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _ResidualAttention(nn.Module):
    """x + Attention(GroupNorm(x)) over the H·W tokens of a feature map [B, ch, H, W].

    The output projection (`to_out[0]` of diffusers' Attention) is zero-initialised, so a fresh block is exactly
    the identity and adding attention does not disturb the signal at the start of training (as guided-diffusion
    does with its `proj_out`). Consequence: the context has no effect until that projection has been trained.
    """

    def __init__(self, channels: int, head_dim: int, context_dim: int | None) -> None:
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"attention channels {channels} must be a multiple of head_dim {head_dim}")
        self.norm = nn.GroupNorm(norm_groups(channels), channels, eps=1e-6)
        self.attn = Attention(query_dim=channels, cross_attention_dim=context_dim, heads=channels // head_dim,
                              dim_head=head_dim, out_bias=True)
        zero_init_(self.attn.to_out[0])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, H·W, C]
        out = self.attn(tokens, encoder_hidden_states=context)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class SelfAttentionBlock(_ResidualAttention):
    """Residual multi-head self-attention over all texels of the rolled-out triplane: [B, ch, H, 3W] → same."""

    def __init__(self, channels: int, head_dim: int) -> None:
        super().__init__(channels, head_dim, context_dim=None)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x, None)


class CrossAttentionBlock(_ResidualAttention):
    """Residual cross-attention from the texels [B, ch, H, 3W] to portrait tokens `context` [B, N, context_dim]."""

    def __init__(self, channels: int, head_dim: int, context_dim: int) -> None:
        super().__init__(channels, head_dim, context_dim=context_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError("CrossAttentionBlock needs a context [B, N, context_dim]")
        return super().forward(x, context)


SCALE_KEYS = ("y1", "y2", "y3")  # portrait feature pyramid, finest (H/2) to coarsest (H/8)


@dataclass
class Context:
    """Portrait tokens: `scales` 3 × [B, N, D] (finest first) and `global_token` [B, D]."""

    scales: list[torch.Tensor]
    global_token: torch.Tensor

    def for_scale(self, scale: int) -> torch.Tensor:
        """Tokens of one portrait scale plus the global token → [B, N + 1, D] (a U-Net level's cross-attention)."""
        return torch.cat([self.scales[scale], self.global_token[:, None]], 1)

    def all_tokens(self) -> torch.Tensor:
        """Tokens the middle block attends to: every scale plus the global token → [B, 3N + 1, D]."""
        return torch.cat([*self.scales, self.global_token[:, None]], 1)


class PortraitTokenizer(nn.Module):
    """Portrait features {"y1", "y2", "y3": [B, c_i, s_i, s_i], "global": [B, global_dim]} → `Context`.

    Each scale: GroupNorm → Conv2d with kernel = stride = s_i / tokens_per_side (one token per patch) → flatten →
    Linear, giving tokens_per_side² tokens of width context_dim (the authors' multi-scale tokens, RodinHD §3.3).
    The global vector becomes one token through a Linear. Dropped conditions use learned null tokens.
    """

    def __init__(self, scale_channels: tuple[int, int, int], scale_sizes: tuple[int, int, int], global_dim: int,
                 context_dim: int, tokens_per_side: int = 4) -> None:
        super().__init__()
        if len(scale_channels) != 3 or len(scale_sizes) != 3:
            raise ValueError("PortraitTokenizer expects three scales")
        if any(s % tokens_per_side for s in scale_sizes):
            raise ValueError(f"scale sizes {scale_sizes} must be multiples of tokens_per_side={tokens_per_side}")
        self.scale_sizes = tuple(scale_sizes)
        self.num_tokens = tokens_per_side ** 2
        self.scale_layers = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(norm_groups(c), c, eps=1e-6),
                          nn.Conv2d(c, context_dim, kernel_size=s // tokens_per_side, stride=s // tokens_per_side))
            for c, s in zip(scale_channels, scale_sizes))
        self.scale_proj = nn.ModuleList(nn.Linear(context_dim, context_dim) for _ in scale_channels)
        self.global_proj = nn.Linear(global_dim, context_dim)
        # small random (not zero) nulls: distinct from each other and from a real token from the first step
        self.null_scales = nn.Parameter(0.02 * torch.randn(3, self.num_tokens, context_dim))
        self.null_global = nn.Parameter(0.02 * torch.randn(context_dim))

    def null_context(self, batch_size: int) -> Context:
        """The unconditional context: null tokens for every sample."""
        scales = [null.expand(batch_size, -1, -1) for null in self.null_scales]
        return Context(scales, self.null_global.expand(batch_size, -1))

    def forward(self, features: dict[str, torch.Tensor] | None, drop: torch.Tensor | None = None,
                batch_size: int | None = None) -> Context:
        """features (or None: unconditional), drop: bool [B] (True = use the null condition for that sample)."""
        if features is None:
            if batch_size is None:
                raise ValueError("batch_size is needed when no portrait features are given")
            return self.null_context(batch_size)
        scales = [self._scale_tokens(i, features[key]) for i, key in enumerate(SCALE_KEYS)]
        global_token = self.global_proj(features["global"])
        if drop is None:
            return Context(scales, global_token)
        drop = drop.to(device=global_token.device, dtype=torch.bool)
        scales = [torch.where(drop[:, None, None], null, tok) for null, tok in zip(self.null_scales, scales)]
        return Context(scales, torch.where(drop[:, None], self.null_global, global_token))

    def _scale_tokens(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        """[B, c_i, s_i, s_i] → [B, tokens_per_side², context_dim]."""
        size = self.scale_sizes[index]
        if feature.shape[-2:] != (size, size):
            raise ValueError(f"portrait scale {SCALE_KEYS[index]} must be {size}×{size}, got {list(feature.shape)}")
        tokens = self.scale_layers[index](feature).flatten(2).transpose(1, 2)
        return self.scale_proj[index](tokens)
