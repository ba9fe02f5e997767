"""Image metrics for evaluation and losses: PSNR, SSIM, and a MobileNetV2 feature distance that substitutes for
LPIPS (report it under `PERCEPTUAL_NAME`, never as "LPIPS"). Also home of the plain-torch ImageNet MobileNetV2,
whose feature pyramid (`MobileNetV2Features`) the portrait encoder reuses."""
from __future__ import annotations

from .image import gaussian_window, psnr, ssim
from .mobilenet import (
    IMAGENET_MEAN, IMAGENET_STD, STAGE_CHANNELS, STAGE_STRIDES, STAGES, MobileNetV2, MobileNetV2Features, StageName,
    imagenet_weights_path, mobilenet_v2,
)
from .perceptual import NAME as PERCEPTUAL_NAME
from .perceptual import PerceptualDistance

__all__ = [
    "psnr", "ssim", "gaussian_window",
    "MobileNetV2", "MobileNetV2Features", "mobilenet_v2", "imagenet_weights_path", "StageName",
    "STAGES", "STAGE_CHANNELS", "STAGE_STRIDES", "IMAGENET_MEAN", "IMAGENET_STD",
    "PerceptualDistance", "PERCEPTUAL_NAME",
]
