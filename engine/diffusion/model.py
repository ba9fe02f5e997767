"""One stage of the cascade (base or upsample): the triplane U-Net, its noise schedule and objective, and the
triplane normalisation statistics — saved together as one component folder (config.json + model.safetensors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ConfigError, ConfigMixin
from engine.diffusion.gaussian import GaussianDiffusion
from engine.diffusion.rollout import roll_in, roll_out
from engine.diffusion.schedules import ScheduleConfig, betas
from engine.diffusion.unet import TriplaneUNet, TriplaneUNetConfig
from engine.errors import UserError
from engine.weights import load_state_into, load_weights, read_component_config, save_component

ROLES = ("base", "upsample")
PREDICTIONS = ("epsilon", "sample")


@dataclass
class DiffusionStageConfig(ConfigMixin):
    role: str = "base"
    """base (portrait → low-resolution triplane) or upsample (low-resolution → high-resolution triplane)."""
    resolution: int = 32
    """Triplane resolution R this stage generates."""
    lowres_resolution: int = 0
    """upsample: resolution of the low-resolution triplane it is conditioned on (0 for the base)."""
    prediction_type: str = "epsilon"
    """epsilon (base, with learned-range variance) or sample (x0-prediction, the upsampler's Eq. 5)."""
    clip_range: float = 0.0
    """Clip predicted x0 to ±clip_range (normalised units) while sampling; 0 = no clipping."""
    lowres_residual: bool = False
    """upsample with x0-prediction: the network predicts the residual over the upsampled low-res input, so an
    untrained upsampler already returns the bicubic upsampling and training only has to add detail."""
    unet: TriplaneUNetConfig = field(default_factory=lambda: TriplaneUNetConfig.preset("base_tiny"))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"role must be one of {ROLES} (got {self.role!r})")
        if self.prediction_type not in PREDICTIONS:
            raise ConfigError(f"prediction_type must be one of {PREDICTIONS} (got {self.prediction_type!r})")
        if self.unet.resolution != self.resolution:
            raise ConfigError(f"unet.resolution ({self.unet.resolution}) must equal resolution ({self.resolution})")
        wants_lowres = self.role == "upsample"
        if wants_lowres != (self.lowres_resolution > 0) or wants_lowres != (self.unet.lowres_channels > 0):
            raise ConfigError("an upsample stage needs lowres_resolution > 0 and unet.lowres_channels > 0; "
                              "a base stage needs both 0")
        if self.lowres_residual and (self.role != "upsample" or self.prediction_type != "sample"):
            raise ConfigError("lowres_residual needs role upsample and prediction_type sample")
        if self.clip_range < 0:
            raise ConfigError(f"clip_range must be ≥ 0 (got {self.clip_range})")

    @property
    def channels(self) -> int:
        return self.unet.channels


def stage_config(role: str, preset: str) -> DiffusionStageConfig:
    """The named preset ("tiny" or "paper") of a base or upsample stage."""
    unet = TriplaneUNetConfig.preset(f"{role}_{preset}")
    if role == "base":
        # tiny: x0-prediction — an ε-model under cosine_light needs far more training than a CPU allows before its
        # high-noise predictions are accurate enough to sample from (measured: docs/diffusion.md)
        prediction = "sample" if preset == "tiny" else "epsilon"
        return DiffusionStageConfig(role="base", resolution=unet.resolution, prediction_type=prediction,
                                    clip_range=0.0, unet=unet, schedule=ScheduleConfig(name="cosine_light"))
    lowres = {"tiny": 32, "paper": 128}[preset]
    return DiffusionStageConfig(role="upsample", resolution=unet.resolution, lowres_resolution=lowres,
                                prediction_type="sample", clip_range=0.0, lowres_residual=True, unet=unet,
                                schedule=ScheduleConfig(name="sigmoid", timesteps=1000))


class DiffusionStage(nn.Module):
    """The U-Net plus normalisation buffers. Works on rolled-out normalised triplanes [B, C, R, 3R]."""

    def __init__(self, config: DiffusionStageConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = TriplaneUNet(config.unet)
        channels = config.channels
        self.register_buffer("norm_mean", torch.zeros(3, channels))
        self.register_buffer("norm_std", torch.ones(3, channels))
        self.diffusion = GaussianDiffusion(self.betas())

    def betas(self) -> torch.Tensor:
        return betas(self.config.schedule)

    @property
    def learned_variance(self) -> bool:
        return self.config.unet.learned_variance

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per plane and channel statistics [3, C] of the training triplanes at this stage's resolution."""
        self.norm_mean.copy_(mean)
        self.norm_std.copy_(std.clamp(min=1e-6))

    def normalize(self, planes: torch.Tensor) -> torch.Tensor:
        """Raw triplanes [B, 3, C, R, R] → normalised, rolled out [B, C, R, 3R]."""
        z = (planes - self.norm_mean[None, :, :, None, None]) / self.norm_std[None, :, :, None, None]
        return roll_out(z)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Rolled-out normalised [B, C, R, 3R] → raw triplanes [B, 3, C, R, R], clamped to [-1, 1] as fitted."""
        planes = roll_in(x) * self.norm_std[None, :, :, None, None] + self.norm_mean[None, :, :, None, None]
        return planes.clamp(-1.0, 1.0)

    def lowres_input(self, lowres_planes: torch.Tensor) -> torch.Tensor:
        """upsample: raw low-res triplanes [B, 3, C, r, r] → bicubic up to R, normalised, rolled out."""
        b, three, c, r, _ = lowres_planes.shape
        size = self.config.resolution
        up = F.interpolate(lowres_planes.reshape(b * three, c, r, r), size=(size, size), mode="bicubic",
                           align_corners=False).reshape(b, three, c, size, size)
        return self.normalize(up)

    def forward(self, x: torch.Tensor, t: torch.Tensor, portrait: dict[str, torch.Tensor] | None = None,
                drop: torch.Tensor | None = None, lowres: torch.Tensor | None = None) -> torch.Tensor:
        out = self.unet(x, t, portrait=portrait, drop=drop, lowres=lowres)
        if self.config.lowres_residual:
            channels = self.config.channels
            out = torch.cat([out[:, :channels] + lowres, out[:, channels:]], 1)
        return out

    # ------------------------------------------------------------------------------------------- on disk
    def save(self, folder: Path, metadata: dict[str, str] | None = None, half: bool = False) -> str:
        """Component folder: config.json ({"kind": "triplane_diffusion", ...}) + model.safetensors; → hash.
        `half` stores the network weights in fp16 (half the size; loaded back into fp32); the normalisation
        buffers stay fp32."""
        config = {"kind": "triplane_diffusion", **self.config.to_dict()}
        tensors = self.state_dict()
        if half:
            weights = dict(self.named_parameters())
            tensors = {k: v.half() if k in weights else v for k, v in tensors.items()}
        return save_component(folder, config, tensors, metadata=metadata)

    @classmethod
    def load(cls, folder: Path, device: str | torch.device = "cpu") -> "DiffusionStage":
        data = read_component_config(folder, "diffusion stage")
        kind = data.pop("kind", None)
        if kind != "triplane_diffusion":
            raise UserError(f"{folder}: not a triplane diffusion stage (kind {kind!r})")
        try:
            config = DiffusionStageConfig.from_dict(data)
        except ConfigError as exc:
            raise UserError(f"{folder}/config.json: {exc}") from exc
        stage = cls(config)
        load_state_into(stage, load_weights(folder, what="diffusion stage"), folder)
        return stage.to(device).eval()


def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """target ← decay·target + (1 − decay)·source for parameters; buffers copied."""
    with torch.no_grad():
        for t_param, s_param in zip(target.parameters(), source.parameters()):
            t_param.lerp_(s_param.detach(), 1.0 - decay)
        for t_buf, s_buf in zip(target.buffers(), source.buffers()):
            t_buf.copy_(s_buf)


def describe(stage: DiffusionStage) -> dict[str, Any]:
    n = sum(p.numel() for p in stage.parameters())
    return {"role": stage.config.role, "resolution": stage.config.resolution, "parameters": n,
            "schedule": stage.config.schedule.name, "prediction": stage.config.prediction_type}
