"""`VAEEncoder` (kind "autoencoder_kl"): the encoder half of a diffusers `AutoencoderKL` as the portrait encoder.

Where the pyramid comes from. diffusers' VAE `Encoder` runs conv_in (stride 1), then N down blocks; every block but
the last ends with a stride-2 downsampler, so block i's *input* is at stride 2^i and its *output* at stride
2^min(i+1, N-1). For an SD/SDXL-shaped VAE (N = 4): block 0 → S/2, block 1 → S/4, blocks 2 and 3 → S/8.
We take, for each of y1/y2/y3, the output of the LAST block at stride 2/4/8: y1 = block 0, y2 = block 1,
y3 = block 3 for N = 4 (the deepest map before the mid block), block 2 for N ≥ 5. Channels are
block_out_channels[that block]. N < 4 cannot reach S/8 and is refused.

global = the mid block's output averaged over space (block_out_channels[-1] channels, e.g. 512 for SDXL). The
spatial mean of the latent posterior mean was the other candidate, but it has only 4–8 numbers and mostly encodes
the mean colour; the mid-block vector is the last and richest feature map. `latent_mean` still gives the latent.

Images in [0, 1] are mapped to the VAE's [-1, 1] inside. A saved component keeps only the encoder-side weights
(`encoder.*`, `quant_conv.*`, AutoencoderKL's names) in fp32 (SD/SDXL VAEs are known to overflow in fp16).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import Encoder
from torch import nn

from engine.config import ConfigError, ConfigMixin
from engine.encoders.base import WHAT, PortraitEncoder, check_image_size, config_from_component, resize_square
from engine.errors import UserError
from engine.weights import PICKLE_SUFFIXES, load_state_into, load_weights

KIND = "autoencoder_kl"
ENCODER_PREFIXES = ("encoder.", "quant_conv.")
MIN_BLOCKS = 4  # three downsamplers are needed for S/8

TINY_AUTOENCODER: dict[str, Any] = {
    "block_out_channels": [32, 64, 64, 64], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 1, "latent_channels": 4, "sample_size": 128,
}


def _autoencoder_defaults() -> dict[str, Any]:
    """AutoencoderKL's constructor defaults (what a config.json that omits a key means)."""
    params = inspect.signature(AutoencoderKL.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


_DEFAULTS = _autoencoder_defaults()


def autoencoder_settings(autoencoder: dict[str, Any]) -> dict[str, Any]:
    """A stored AutoencoderKL config completed with diffusers' defaults; unknown/private keys are ignored."""
    return {**_DEFAULTS, **{k: v for k, v in autoencoder.items() if k in _DEFAULTS}}


def public_config(config: Any) -> dict[str, Any]:
    """A diffusers config (FrozenDict) without its private `_class_name`/`_diffusers_version`/... keys."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}


def pyramid_blocks(n_blocks: int) -> dict[str, int]:
    """Index of the down block whose output is y1 (S/2), y2 (S/4), y3 (S/8): the last block at that stride."""
    out_log2 = [min(i + 1, n_blocks - 1) for i in range(n_blocks)]  # block i's output is at stride 2^out_log2[i]
    return {key: max(i for i, s in enumerate(out_log2) if s == level)
            for level, key in ((1, "y1"), (2, "y2"), (3, "y3"))}


@dataclass
class VAEEncoderConfig(ConfigMixin):
    image_size: int = 128
    """Side S of the square image the VAE encodes; y1/y2/y3 are S/2, S/4, S/8 (a multiple of 8)."""
    autoencoder: dict[str, Any] = field(default_factory=lambda: dict(TINY_AUTOENCODER))
    """The AutoencoderKL config (its constructor arguments, as in its config.json)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}}

    def validate(self) -> None:
        check_image_size(self.image_size)
        s = autoencoder_settings(self.autoencoder)
        channels, blocks = list(s["block_out_channels"]), list(s["down_block_types"])
        if len(channels) < MIN_BLOCKS or len(blocks) != len(channels):
            raise ConfigError(f"autoencoder: needs ≥ {MIN_BLOCKS} down blocks (one per block_out_channels entry) to "
                              f"reach S/8; got {len(channels)} channels and {len(blocks)} down blocks")
        if s["in_channels"] != 3:
            raise ConfigError(f"autoencoder.in_channels must be 3 (RGB), got {s['in_channels']}")
        if any(c % s["norm_num_groups"] for c in channels):
            raise ConfigError(f"autoencoder.norm_num_groups {s['norm_num_groups']} must divide every "
                              f"block_out_channels entry {channels}")


class VAEEncoder(PortraitEncoder):
    """Frozen AutoencoderKL encoder as a pyramid; see the module docstring. Built from a config it has random
    weights: use `from_autoencoder`, `from_autoencoder_folder` or `engine.encoders.load_encoder`."""

    KIND: ClassVar[str] = KIND

    def __init__(self, config: VAEEncoderConfig | None = None) -> None:
        super().__init__(config or VAEEncoderConfig())
        s = autoencoder_settings(self.config.autoencoder)
        self.latent_channels = int(s["latent_channels"])
        self.block_channels = tuple(int(c) for c in s["block_out_channels"])
        self.encoder = Encoder(  # the same arguments AutoencoderKL passes, so its `encoder.*` weights fit
            in_channels=s["in_channels"], out_channels=self.latent_channels,
            down_block_types=tuple(s["down_block_types"]), block_out_channels=self.block_channels,
            layers_per_block=s["layers_per_block"], act_fn=s["act_fn"], norm_num_groups=s["norm_num_groups"],
            double_z=True, mid_block_add_attention=s["mid_block_add_attention"])
        moments = 2 * self.latent_channels
        self.quant_conv = nn.Conv2d(moments, moments, 1) if s["use_quant_conv"] else None
        self.taps = pyramid_blocks(len(self.block_channels))
        self.freeze()

    # ------------------------------------------------------------------------------------------ features
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {
            key: (self.block_channels[block], self.image_size // stride)
            for (key, block), stride in zip(self.taps.items(), (2, 4, 8))}
        shapes["global"] = (self.block_channels[-1],)
        return shapes

    def _encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder.conv_in(x * 2.0 - 1.0)
        wanted = {block: key for key, block in self.taps.items()}
        out: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.encoder.down_blocks):
            h = block(h)
            if i in wanted:
                out[wanted[i]] = h
        out["global"] = self.encoder.mid_block(h).mean(dim=(2, 3))
        return out

    @torch.no_grad()
    def latent_mean(self, images: torch.Tensor) -> torch.Tensor:
        """The posterior mean `[B, latent_channels, S/f, S/f]` (f = 2^(N-1)) of images `[B, 3, H, W]` in [0, 1]."""
        x = resize_square(images.to(self.device, torch.float32), self.image_size)
        moments = self.encoder(x * 2.0 - 1.0)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return moments[:, : self.latent_channels]

    # ------------------------------------------------------------------------------------------- sources
    @classmethod
    def from_autoencoder(cls, vae: AutoencoderKL, image_size: int = 128) -> "VAEEncoder":
        """The encoder half of an in-memory AutoencoderKL (weights copied to fp32 on the CPU)."""
        encoder = cls(VAEEncoderConfig(image_size=image_size, autoencoder=public_config(vae.config)))
        state = {k: v.detach().float().cpu() for k, v in vae.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
        load_state_into(encoder, state, "autoencoder")
        return encoder.freeze()

    @classmethod
    def from_autoencoder_folder(cls, path: str | Path, image_size: int = 256) -> "VAEEncoder":
        """From a local diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors), or a
        pipeline folder holding one in `vae/`. Pickle-only folders (.bin/.ckpt) are refused, never unpickled."""
        folder = _autoencoder_folder(Path(path))
        try:
            vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=True)
            return cls.from_autoencoder(vae, image_size)
        except ConfigError as exc:
            raise UserError(f"{folder}: this AutoencoderKL cannot serve as the portrait encoder ({exc})") from exc
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{folder}: cannot load the AutoencoderKL ({first})") from exc

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(ENCODER_PREFIXES)}

    @classmethod
    def from_folder(cls, folder: Path, data: dict[str, Any]) -> "VAEEncoder":
        encoder = cls(config_from_component(VAEEncoderConfig, data, folder))
        load_state_into(encoder, load_weights(folder, what=WHAT), folder)
        return encoder.freeze()


def _autoencoder_folder(path: Path) -> Path:
    """The folder holding the VAE (itself or `vae/`), after checking it has safetensors weights."""
    if not path.is_dir():
        raise UserError(f"{path}: no such folder (expected a diffusers AutoencoderKL folder)")
    if not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
        path = path / "vae"
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a diffusers AutoencoderKL folder (missing config.json)")
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise UserError(f"{path}: the VAE weights must be safetensors; refusing to unpickle {pickled[0]} "
                            "(convert it with safetensors.torch.save_file)")
        raise UserError(f"{path}: no .safetensors weights in this AutoencoderKL folder")
    return path


__all__ = ["KIND", "TINY_AUTOENCODER", "VAEEncoder", "VAEEncoderConfig", "autoencoder_settings", "pyramid_blocks"]
