"""A minute model folder for studio tests: untrained stages with perturbed weights and a decoder whose density is
high enough that every avatar is visible (so orbiting and exports have something to show)."""
from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import C, tiny_stage

from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.encoders import build_encoder
from engine.encoders.mobilenet import MobileNetEncoderConfig
from engine.pipeline import AvatarPipeline


def tiny_model(folder: Path, timesteps: int = 40) -> Path:
    """Save a minute cascade model to `folder` (a few MB, built in about a second)."""
    torch.manual_seed(0)
    decoder = TriplaneDecoder(DecoderConfig(channels=C, hidden=16, geo_features=8, density_bias=2.0))
    encoder = build_encoder(MobileNetEncoderConfig(image_size=32))
    pipe = AvatarPipeline(decoder, encoder, tiny_stage("base", 1, timesteps), tiny_stage("upsample", 2, timesteps))
    pipe.save_pretrained(folder)
    return folder
