"""Configuration of our own small VAE (a diffusers AutoencoderKL trained on the dataset's portraits), with the
`tiny` (CPU) and `paper` (SDXL-like shape) presets. Its encoder half becomes a portrait encoder (engine.encoders)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from engine.config import ConfigError, ConfigMixin

MIN_BLOCKS = 4  # the portrait encoder's pyramid needs features at S/8


@dataclass
class VAEConfig(ConfigMixin):
    """Every size and weight of VAE training, written to the run's config.json."""

    image_size: int = 128
    """Side of the square portraits the VAE is trained on (and the encoder's image_size)."""
    block_out_channels: tuple[int, ...] = (32, 64, 64, 64)
    """Channels per resolution level of the encoder/decoder (≥ 4 levels; latent at image_size / 2^(levels-1))."""
    layers_per_block: int = 1
    """ResNet layers per level."""
    latent_channels: int = 4
    """Channels of the latent (SD: 4, SDXL-like: 8 here)."""
    norm_num_groups: int = 32
    """GroupNorm groups; must divide every entry of block_out_channels."""
    batch_size: int = 8
    """Portraits per step."""
    lr: float = 2e-4
    """Adam learning rate (constant, so a run can be extended with more steps on resume)."""
    steps: int = 2000
    """Optimisation steps in total."""
    kl_weight: float = 1e-6
    """Weight of the KL term (summed over latent elements, averaged over the batch), as in LDM's VAEs."""
    perceptual_weight: float = 0.1
    """Weight of the MobileNetV2 feature distance (LPIPS substitute, engine.metrics.perceptual); 0 = off."""
    log_every: int = 25
    """Write a metrics.jsonl line every this many steps."""
    checkpoint_every: int = 200
    """Save a checkpoint and a sample grid every this many steps (and at the end / on stop)."""
    seed: int = 0
    """Seeds the initial weights, the data order, the flips and the posterior samples."""
    device: str = "cpu"
    """torch device to train on ("cpu", "cuda", "cuda:1", ...)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {},
        "paper": {"image_size": 256, "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
                  "latent_channels": 8, "steps": 100_000, "checkpoint_every": 2000, "log_every": 100},
    }
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("steps", "log_every", "checkpoint_every", "device")

    def validate(self) -> None:
        levels = len(self.block_out_channels)
        if levels < MIN_BLOCKS:
            raise ConfigError(f"block_out_channels needs ≥ {MIN_BLOCKS} levels (got {list(self.block_out_channels)})")
        if any(c < 1 or c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(f"norm_num_groups {self.norm_num_groups} must divide every block_out_channels entry "
                              f"{list(self.block_out_channels)}")
        factor = 2 ** (levels - 1)
        if self.image_size < factor or self.image_size % max(factor, 8):
            raise ConfigError(f"image_size must be a multiple of {max(factor, 8)} (got {self.image_size})")
        positive = {"layers_per_block": self.layers_per_block, "latent_channels": self.latent_channels,
                    "batch_size": self.batch_size, "steps": self.steps, "log_every": self.log_every,
                    "checkpoint_every": self.checkpoint_every}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be ≥ 1 (got {value})")
        if self.lr <= 0 or self.kl_weight < 0 or self.perceptual_weight < 0:
            raise ConfigError(f"lr must be > 0 and kl_weight, perceptual_weight ≥ 0 (got {self.lr}, "
                              f"{self.kl_weight}, {self.perceptual_weight})")

    def autoencoder_kwargs(self) -> dict[str, Any]:
        """The diffusers AutoencoderKL constructor arguments for this config."""
        levels = len(self.block_out_channels)
        return {"in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * levels,
                "up_block_types": ("UpDecoderBlock2D",) * levels, "block_out_channels": tuple(self.block_out_channels),
                "layers_per_block": self.layers_per_block, "latent_channels": self.latent_channels,
                "norm_num_groups": self.norm_num_groups, "sample_size": self.image_size}


__all__ = ["VAEConfig"]
