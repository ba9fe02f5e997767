"""Minute diffusion settings and a fake fit run (random triplanes + a random decoder) shared by the diffusion
training / generation tests (imported as a plain module)."""
from __future__ import annotations

from pathlib import Path

import torch
from fit_helpers import cli, make_dataset, set_args

from engine.decoder import DecoderConfig, TriplaneDecoder, save_decoder
from engine.triplane import save_triplane

CHANNELS, HR, LR = 8, 16, 8

COMMON = {"encoder_image_size": 32, "batch_size": 2, "log_every": 1, "checkpoint_every": 1, "sample_every": 0,
          "warmup_steps": 1}
BASE = {**COMMON, "stage": {
    "resolution": LR, "schedule": {"timesteps": 50},
    "unet": {"resolution": LR, "channels": CHANNELS, "model_channels": 16, "channel_mult": [1, 2],
             "attention_levels": [1], "cross_attention_levels": [0, 1], "head_dim": 8, "context_dim": 16}}}
UPSAMPLE = {**COMMON, "patch_samples": 8, "stage": {
    "resolution": HR, "lowres_resolution": LR, "schedule": {"timesteps": 50},
    "unet": {"resolution": HR, "channels": CHANNELS, "lowres_channels": CHANNELS, "model_channels": 8,
             "channel_mult": [1, 2], "head_dim": 8, "context_dim": 16}}}


def fake_fit_run(data: Path, out: Path, names: list[str], seed: int = 0) -> Path:
    """A folder shaped like a stage-2 fit run: decoder/ and triplanes/NAME.safetensors (smooth random planes)."""
    torch.manual_seed(seed)
    decoder = TriplaneDecoder(DecoderConfig(channels=CHANNELS, hidden=16, geo_features=8))
    digest = save_decoder(out / "decoder", decoder)
    for i, name in enumerate(names):
        coarse = torch.randn(3, CHANNELS, 4, 4, generator=torch.Generator().manual_seed(seed + i))
        planes = torch.nn.functional.interpolate(coarse, size=(HR, HR), mode="bilinear").clamp(-1, 1) * 0.5
        save_triplane(out / "triplanes" / f"{name}.safetensors", planes, digest)
    return out


def make_sources(root: Path, count: int = 3) -> tuple[Path, Path]:
    data = make_dataset(root / "data", count)
    names = sorted(p.name for p in data.iterdir() if p.is_dir())
    return data, fake_fit_run(data, root / "fit", names)


def train_args(stage: str, data: Path, fit: Path, out: Path, steps: int, *more) -> list:
    settings = BASE if stage == "base" else UPSAMPLE
    return ["train", "--stage", stage, "--data", data, "--triplanes", fit, "--out", out, "--steps", steps,
            *set_args(settings), *more]


def build_model(root: Path, data: Path, fit: Path, steps: int = 2) -> Path:
    assert cli(train_args("base", data, fit, root / "base", steps)) == 0
    assert cli(train_args("upsample", data, fit, root / "up", steps)) == 0
    assert cli(["model", "build", "--base", root / "base", "--upsample", root / "up", "--out", root / "model"]) == 0
    return root / "model"
