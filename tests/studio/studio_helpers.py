"""A minute model folder for studio tests: untrained stages with perturbed weights and a decoder whose density is
high enough that every avatar is visible (so orbiting and exports have something to show)."""
from __future__ import annotations

from pathlib import Path

import torch

from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.diffusion.model import DiffusionStage, DiffusionStageConfig
from engine.diffusion.schedules import ScheduleConfig
from engine.diffusion.unet import TriplaneUNetConfig
from engine.encoders import build_encoder
from engine.encoders.mobilenet import MobileNetEncoderConfig
from engine.pipeline import AvatarPipeline

C = 8


def _stage(role: str, seed: int, timesteps: int) -> DiffusionStage:
    shapes = {"portrait_channels": (16, 24, 32), "portrait_sizes": (16, 8, 4), "portrait_global_dim": 1280}
    common = {"channels": C, "channel_mult": (1, 2), "head_dim": 8, "context_dim": 16, **shapes}
    torch.manual_seed(seed)
    if role == "base":
        unet = TriplaneUNetConfig.preset("base_tiny", resolution=8, model_channels=16, attention_levels=(1,),
                                         cross_attention_levels=(0, 1), **common)
        config = DiffusionStageConfig(role="base", resolution=8, unet=unet,
                                      schedule=ScheduleConfig(timesteps=timesteps))
    else:
        unet = TriplaneUNetConfig.preset("upsample_tiny", resolution=16, lowres_channels=C, model_channels=8,
                                         **common)
        config = DiffusionStageConfig(role="upsample", resolution=16, lowres_resolution=8, prediction_type="sample",
                                      unet=unet, schedule=ScheduleConfig(name="sigmoid", timesteps=timesteps))
    stage = DiffusionStage(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in stage.unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return stage.eval()


def tiny_model(folder: Path, timesteps: int = 40) -> Path:
    """Save a minute cascade model to `folder` (a few MB, built in about a second)."""
    torch.manual_seed(0)
    decoder = TriplaneDecoder(DecoderConfig(channels=C, hidden=16, geo_features=8, density_bias=2.0))
    encoder = build_encoder(MobileNetEncoderConfig(image_size=32))
    pipe = AvatarPipeline(decoder, encoder, _stage("base", 1, timesteps), _stage("upsample", 2, timesteps))
    pipe.save_pretrained(folder)
    return folder
