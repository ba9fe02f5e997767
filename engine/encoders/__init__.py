"""Frozen portrait encoders E (the diffusion model's condition, paper Eq. 7): `{y1, y2, y3, global}` pyramids.

    encoder = build_encoder(MobileNetEncoderConfig())          # ImageNet MobileNetV2 pyramid
    encoder = VAEEncoder.from_autoencoder_folder("sdxl-vae")    # a local diffusers AutoencoderKL
    encoder.save("model/encoder"); encoder = load_encoder("model/encoder")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.encoders.base import FEATURE_KEYS, WHAT, PortraitEncoder, resize_square
from engine.encoders.mobilenet import MobileNetEncoder, MobileNetEncoderConfig
from engine.encoders.vae import VAEEncoder, VAEEncoderConfig
from engine.errors import UserError
from engine.weights import read_component_config

ENCODER_KINDS: dict[str, type[PortraitEncoder]] = {MobileNetEncoder.KIND: MobileNetEncoder,
                                                     VAEEncoder.KIND: VAEEncoder}
EncoderConfig = MobileNetEncoderConfig | VAEEncoderConfig


def build_encoder(config: EncoderConfig) -> PortraitEncoder:
    """A fresh encoder for `config`: MobileNet with ImageNet weights; a VAE encoder with random weights (load a
    trained one with `load_encoder` or `VAEEncoder.from_autoencoder_folder`)."""
    if isinstance(config, MobileNetEncoderConfig):
        return MobileNetEncoder(config)
    if isinstance(config, VAEEncoderConfig):
        return VAEEncoder(config)
    raise TypeError(f"no portrait encoder for config type {type(config).__name__}")


def load_encoder(folder: str | Path, device: str | torch.device = "cpu") -> PortraitEncoder:
    """Load a saved encoder component folder (config.json with "kind" + model.safetensors) onto `device`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (expected a {WHAT} saved with encoder.save)")
    data: dict[str, Any] = read_component_config(folder, WHAT)
    kind = data.get("kind")
    if kind not in ENCODER_KINDS:
        raise UserError(f"{folder}/config.json: unknown {WHAT} kind {kind!r}; known kinds: {sorted(ENCODER_KINDS)}")
    return ENCODER_KINDS[kind].from_folder(folder, data).to(device)


__all__ = ["ENCODER_KINDS", "FEATURE_KEYS", "EncoderConfig", "MobileNetEncoder", "MobileNetEncoderConfig",
           "PortraitEncoder", "VAEEncoder", "VAEEncoderConfig", "build_encoder", "load_encoder", "resize_square"]
