"""Minute untrained diffusion stages shared by the pipeline and studio tests (8-channel 8²/16² triplanes)."""
from __future__ import annotations

import torch

from engine.diffusion.model import DiffusionStage, DiffusionStageConfig
from engine.diffusion.schedules import ScheduleConfig
from engine.diffusion.unet import TriplaneUNetConfig

C = 8


def perturbed(stage: DiffusionStage, seed: int) -> DiffusionStage:
    """Zero-initialised output layers make an untrained net output 0; give it weights that do something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in stage.unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return stage.eval()


def tiny_stage(role: str, seed: int, timesteps: int = 40) -> DiffusionStage:
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
    return perturbed(DiffusionStage(config), seed)
