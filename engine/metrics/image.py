"""Full-reference image metrics: PSNR and SSIM (Wang et al. 2004) over image batches.

Images are `[B, C, H, W]` (or one image `[C, H, W]`) with values in `[0, max_val]`; every metric returns one value
per image, `[B]` (a 0-d tensor for an unbatched input). Both are plain torch and differentiable, so they can be used
as losses as well as for evaluation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def as_image_batch(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Check that `pred` and `target` are matching `[B, C, H, W]` or `[C, H, W]` images and return them batched
    (`[B, C, H, W]`) together with `unbatched` (True when the inputs were `[C, H, W]`)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.dim() not in (3, 4):
        raise ValueError(f"expected images [B, C, H, W] or [C, H, W], got shape {tuple(pred.shape)}")
    unbatched = pred.dim() == 3
    if unbatched:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    return pred, target, unbatched


def _float(x: torch.Tensor) -> torch.Tensor:
    """Integer and half inputs are computed in float32; float32/float64 stay as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _mask_weights(mask: torch.Tensor, shape: torch.Size, unbatched: bool) -> torch.Tensor:
    """Broadcast a pixel mask to the image batch `shape` `[B, C, H, W]`.

    Accepted masks: `[H, W]` (shared by all images), `[B, H, W]`, `[B, 1, H, W]`, `[B, C, H, W]`; for an unbatched
    input also `[1, H, W]` and `[C, H, W]`. Booleans select pixels; float values act as per-pixel weights."""
    m = mask.to(torch.float32) if mask.dtype == torch.bool or not mask.is_floating_point() else mask
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[None] if unbatched else m[:, None]
    if m.dim() != 4:
        raise ValueError(f"mask must be [H, W], [B, H, W] or [B, 1|C, H, W], got shape {tuple(mask.shape)}")
    try:
        return m.expand(shape)
    except RuntimeError as exc:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to images {tuple(shape)}") from exc


def psnr(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0,
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, `10 log10(max_val² / MSE)`, one value per image.

    pred, target: `[B, C, H, W]` or `[C, H, W]`, values in `[0, max_val]`.
    mask: optional pixel mask (see `_mask_weights`); the MSE is then averaged over the masked pixels (all channels)
        only, weighted by the mask value.
    Returns `[B]` (0-d for an unbatched input). Identical images (MSE = 0) give `+inf`; an image whose mask selects
    no pixel gives `nan`. Average PSNR over a data set with care: one `+inf` makes the mean infinite.
    """
    pred, target, unbatched = as_image_batch(pred, target)
    pred, target = _float(pred), _float(target)
    err = (pred - target).square()
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        w = _mask_weights(mask, err.shape, unbatched).to(err.dtype)
        mse = (w * err).flatten(1).sum(1) / w.flatten(1).sum(1)
    out = 10.0 * torch.log10(max_val ** 2 / mse)
    return out[0] if unbatched else out


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian `[size]`, `w[i] ∝ exp(-(i - r)² / 2σ²)` with `r = (size - 1) / 2`.

    With size 11 and σ 1.5 this is exactly the truncated kernel scikit-image uses for
    `structural_similarity(gaussian_weights=True, sigma=1.5)` (radius `int(3.5 σ + 0.5) = 5`)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be odd and positive, got {size}")
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype)


def _blur_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable per-channel Gaussian filtering without padding: `[N, K, H, W]` → `[N, K, H-w+1, W-w+1]`."""
    k = x.shape[1]
    n = window.numel()
    x = F.conv2d(x, window.view(1, 1, n, 1).expand(k, 1, n, 1), groups=k)
    return F.conv2d(x, window.view(1, 1, 1, n).expand(k, 1, 1, n), groups=k)


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03, max_val: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004, Eq. 13) with a Gaussian window, one value per image.

    Local statistics μ, σ², σ_xy are Gaussian-weighted (population, not sample, covariance) over a `window`² patch;
    the SSIM map is computed only where the window fits inside the image (valid convolution), per channel, and
    averaged over pixels and channels. With the defaults this matches
    `skimage.metrics.structural_similarity(pred, target, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=max_val, channel_axis=...)`.

    pred, target: `[B, C, H, W]` or `[C, H, W]`, values in `[0, max_val]`, `H, W ≥ window`.
    Returns `[B]` (0-d for an unbatched input); 1 for identical images.
    """
    pred, target, unbatched = as_image_batch(pred, target)
    pred, target = _float(pred), _float(target)
    b, c, h, w = pred.shape
    if h < window or w < window:
        raise ValueError(f"images of {h}×{w} are smaller than the {window}×{window} SSIM window")
    g = gaussian_window(window, sigma, pred.dtype, pred.device)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    # Moments of mean-shifted images (σ², σ_xy are shift-invariant): far less float32 cancellation in E[x²] - μ².
    # One filtering pass over the five moment images, stacked along channels: [B, 5C, H, W].
    m_x, m_y = pred.mean((2, 3), keepdim=True).detach(), target.mean((2, 3), keepdim=True).detach()
    x, y = pred - m_x, target - m_y
    stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], 1), g)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)
    var_x, var_y, cov = e_xx - mu_x * mu_x, e_yy - mu_y * mu_y, e_xy - mu_x * mu_y
    mu_x, mu_y = mu_x + m_x, mu_y + m_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    out = (num / den).flatten(1).mean(1)
    return out[0] if unbatched else out


__all__ = ["psnr", "ssim", "gaussian_window"]
