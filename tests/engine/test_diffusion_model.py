"""DiffusionStage: normalisation round trip, the upsampler's low-res residual, x0 clipping, save/load."""
from __future__ import annotations

import json

import pytest
import torch

from engine.config import ConfigError
from engine.diffusion.model import DiffusionStage, DiffusionStageConfig, stage_config
from engine.diffusion.unet import TriplaneUNetConfig
from engine.errors import UserError
from engine.pipeline import clip_to_triplane_range

C = 4


def small(role: str, **changes) -> DiffusionStage:
    torch.manual_seed(0)
    common = {"channels": C, "channel_mult": (1, 2), "model_channels": 8, "head_dim": 8, "context_dim": 8,
              "portrait_sizes": (8, 4, 4)}
    if role == "base":
        unet = TriplaneUNetConfig.preset("base_tiny", resolution=8, attention_levels=(1,),
                                         cross_attention_levels=(0, 1), **common)
        return DiffusionStage(DiffusionStageConfig(role="base", resolution=8, unet=unet, **changes))
    unet = TriplaneUNetConfig.preset("upsample_tiny", resolution=16, lowres_channels=C, **common)
    return DiffusionStage(DiffusionStageConfig(role="upsample", resolution=16, lowres_resolution=8,
                                               prediction_type="sample", unet=unet, **changes))


def test_normalise_round_trip_and_layout():
    stage = small("base")
    planes = torch.rand(2, 3, C, 8, 8) * 1.6 - 0.8
    stage.set_normalisation(planes.mean(dim=(0, 3, 4)), planes.std(dim=(0, 3, 4)))
    x = stage.normalize(planes)
    assert x.shape == (2, C, 8, 24)
    assert torch.allclose(x.mean(dim=(0, 2)).reshape(C, 3, 8).mean(-1), torch.zeros(C, 3), atol=1e-5)
    assert torch.allclose(stage.denormalize(x), planes, atol=1e-6)


def test_fresh_residual_upsampler_returns_the_upsampled_input():
    stage = small("upsample", lowres_residual=True)
    low = torch.rand(1, 3, C, 8, 8) - 0.5
    lowres = stage.lowres_input(low)
    x = torch.randn(1, C, 16, 48)
    out = stage(x, torch.tensor([500]), None, lowres=lowres)  # zero-initialised output conv: residual is 0
    assert torch.equal(out, lowres)
    with pytest.raises(ConfigError, match="lowres_residual needs"):
        small("base", lowres_residual=True)
    assert stage_config("upsample", "tiny").lowres_residual
    # the paper's ε-prediction for the paper preset; x0 for the CPU-sized one (docs/diffusion.md)
    assert stage_config("base", "paper").prediction_type == "epsilon"
    assert stage_config("base", "tiny").prediction_type == "sample"


def test_clipping_keeps_x0_inside_the_triplane_range():
    stage = small("base", prediction_type="epsilon")
    stage.set_normalisation(torch.zeros(3, C), torch.full((3, C), 0.2))
    xt, t = torch.randn(1, C, 8, 24), torch.tensor([900])
    wild = torch.randn(1, 2 * C, 8, 24) * 5  # ε far from the truth: x0 = (xt − √(1−ᾱ)ε)/√ᾱ is huge
    clipped = clip_to_triplane_range(stage, wild, xt, t)
    x0 = stage.diffusion.predict_x0(clipped[:, :C], xt, t, "epsilon")
    assert stage.denormalize(x0).abs().max() <= 1.0 + 1e-4
    assert torch.equal(clipped[:, C:], wild[:, C:])  # variance channels untouched
    tame = stage.diffusion.predict_eps(stage.normalize(torch.rand(1, 3, C, 8, 8) * 0.2), xt, t)
    assert torch.allclose(clip_to_triplane_range(stage, torch.cat([tame, wild[:, C:]], 1), xt, t)[:, :C], tame,
                          atol=1e-3)  # an in-range x0 passes through


def test_save_load_round_trip_and_errors(tmp_path):
    stage = small("upsample", lowres_residual=True)
    stage.set_normalisation(torch.rand(3, C), torch.rand(3, C) + 0.5)
    stage.save(tmp_path / "up")
    again = DiffusionStage.load(tmp_path / "up")
    assert again.config == stage.config
    assert all(torch.equal(a, b) for a, b in zip(stage.state_dict().values(), again.state_dict().values()))
    config = json.loads((tmp_path / "up" / "config.json").read_text())
    config["kind"] = "something_else"
    (tmp_path / "up" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="not a triplane diffusion stage"):
        DiffusionStage.load(tmp_path / "up")
    with pytest.raises(UserError, match="no diffusion stage here"):
        DiffusionStage.load(tmp_path / "missing")
