"""Roll a triplane out into one wide image for the 2D U-Net, and back.

The three planes sit side by side along the width in the canonical order XY, XZ, YZ (Rodin §3.1, "roll-out"):
`[B, 3, C, R, R]` ↔ `[B, C, R, 3R]`; unbatched `[3, C, R, R]` ↔ `[C, R, 3R]`. The two functions are exact inverses.
"""
from __future__ import annotations

import torch


def roll_out(planes: torch.Tensor) -> torch.Tensor:
    """[B, 3, C, H, W] → [B, C, H, 3W] ([3, C, H, W] → [C, H, 3W]); plane k occupies columns kW … (k+1)W − 1."""
    if planes.dim() == 4:
        return roll_out(planes.unsqueeze(0)).squeeze(0)
    if planes.dim() != 5 or planes.shape[1] != 3:
        raise ValueError(f"expected planes [B, 3, C, H, W] or [3, C, H, W], got {list(planes.shape)}")
    b, _, c, h, w = planes.shape
    return planes.permute(0, 2, 3, 1, 4).reshape(b, c, h, 3 * w)  # [B, C, H, 3, W] → [B, C, H, 3W]


def roll_in(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, 3W] → [B, 3, C, H, W] (or [C, H, 3W] → [3, C, H, W]); inverse of `roll_out`."""
    if x.dim() == 3:
        return roll_in(x.unsqueeze(0)).squeeze(0)
    if x.dim() != 4 or x.shape[-1] % 3:
        raise ValueError(f"expected a rolled-out triplane [B, C, H, 3W] or [C, H, 3W], got {list(x.shape)}")
    b, c, h, w3 = x.shape
    return x.reshape(b, c, h, 3, w3 // 3).permute(0, 3, 1, 2, 4)


def fold_planes(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, 3W] → [B·3, C, H, W]: each plane becomes its own batch item (so convolutions pad per plane)."""
    planes = roll_in(x)
    return planes.reshape(-1, *planes.shape[2:])


def unfold_planes(x: torch.Tensor) -> torch.Tensor:
    """[B·3, C, H, W] → [B, C, H, 3W]; inverse of `fold_planes`."""
    return roll_out(x.reshape(-1, 3, *x.shape[1:]))
