"""`DiffusionTrainConfig`: one stage's network (DiffusionStageConfig) plus how it is trained."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from engine.config import ConfigError, ConfigMixin
from engine.diffusion.model import DiffusionStageConfig, stage_config


@dataclass
class DiffusionTrainConfig(ConfigMixin):
    stage: DiffusionStageConfig = field(default_factory=lambda: stage_config("base", "tiny"))
    """The network, schedule and objective of the stage being trained (role base or upsample)."""
    encoder: str = "mobilenet_v2"
    """Portrait encoder: mobilenet_v2 (pretrained ImageNet pyramid) or a path to an encoder component folder
    (e.g. RUN/encoder from `rodinhd train --stage vae`, or one made from a local SD/SDXL VAE)."""
    encoder_image_size: int = 128
    """Portrait resolution fed to the mobilenet_v2 encoder (a folder encoder keeps its own)."""
    batch_size: int = 8
    """Triplanes per optimiser step (per process under torchrun)."""
    steps: int = 3000
    """Optimiser steps."""
    lr: float = 2e-4
    """AdamW learning rate after warm-up (the authors use 1e-5 at batch 24 on GPUs)."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up."""
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    """Clip the global gradient norm (0 = off)."""
    ema_decay: float = 0.999
    """EMA of the weights, used for sampling and saved as the component (authors: 0.9999)."""
    cond_drop: float = 0.2
    """Probability of replacing the portrait by the learned null condition (classifier-free guidance)."""
    vlb_weight: float = 1e-3
    """Weight of the variational bound term when the variance is learned (improved DDPM's hybrid loss)."""
    image_loss_weight: float = 1.0
    """upsample: weight of the rendered-patch loss (Eq. 6); 0 turns it off."""
    perceptual_weight: float = 0.5
    """upsample: weight of the perceptual part of the patch loss (MobileNetV2 feature distance, LPIPS substitute)."""
    vgg16_weights: str = ""
    """upsample: local torchvision VGG16 weights (vgg16-397923af.pth) for the perceptual loss; empty = the
    MobileNetV2 substitute."""
    patch_size: int = 32
    """upsample: rendered patch side in pixels."""
    patch_scales: tuple[float, ...] = (0.125, 0.25, 0.5)
    """upsample: render the patch from a view at these fractions of the dataset's image resolution."""
    patch_samples: int = 48
    """upsample: samples per ray when rendering patches."""
    augment_prob: float = 0.5
    """upsample: probability of degrading the low-resolution input (blur, down/up-sampling, noise)."""
    augment_noise: float = 0.1
    """upsample: largest Gaussian noise std, relative to the triplane's std."""
    augment_blur: float = 1.0
    """upsample: largest Gaussian blur sigma in low-resolution texels."""
    log_every: int = 25
    checkpoint_every: int = 500
    sample_every: int = 500
    """Write a sample render into samples/ every N steps (0 = only at the end)."""
    seed: int = 0
    device: str = "cpu"

    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("steps", "log_every", "checkpoint_every", "sample_every",
                                                     "device", "vgg16_weights")
    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"batch_size": 3, "lr": 1e-5, "ema_decay": 0.9999,
                                                     "steps": 500_000, "checkpoint_every": 5000,
                                                     "sample_every": 5000, "encoder_image_size": 256}}

    @classmethod
    def for_stage(cls, role: str, preset: str = "tiny", **changes) -> "DiffusionTrainConfig":
        base = cls.preset(preset)
        return base.replace(stage=stage_config(role, preset), **changes)

    def validate(self) -> None:
        for name in ("batch_size", "steps", "log_every", "checkpoint_every", "patch_size", "patch_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("cond_drop", "augment_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1 (got {getattr(self, name)})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (got {self.ema_decay})")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive (got {self.lr})")
        if not self.patch_scales or any(not 0 < s <= 1 for s in self.patch_scales):
            raise ConfigError(f"patch_scales must be fractions in (0, 1] (got {self.patch_scales})")
