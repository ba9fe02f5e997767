"""Sample previews written into a run's samples/ folder while a stage trains: the portrait next to the front
view of what the EMA model makes from it (upsample: from the ground-truth low-res triplane)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from engine.avatar import Avatar
from engine.io import atomic_write

if TYPE_CHECKING:
    from training.diffusion.trainer import StageTrainer

PREVIEW_SIZE = 128


@torch.no_grad()
def write_sample(trainer: "StageTrainer", path: Path, steps: int = 10, index: int = 0) -> Path:
    from engine.pipeline import sample_stage

    features = {k: v[index:index + 1] for k, v in trainer.features.items()}
    lowres = trainer.lowres[index:index + 1] if trainer.lowres is not None else None
    planes = sample_stage(trainer.ema, features, guidance=1.0, steps=steps, sampler="ddim",
                          generator=torch.Generator().manual_seed(0), lowres=lowres, name=trainer.role)
    decoder = trainer.data.decoder.to(trainer.device)
    render = Avatar(planes[0], decoder).render_view(0.0, 0.0, resolution=PREVIEW_SIZE, samples=48)
    truth = trainer.data.view_image(index, 0, PREVIEW_SIZE).numpy()
    row = np.concatenate([truth, render[..., :3]], axis=1)
    image = Image.fromarray((row.clip(0, 1) * 255 + 0.5).astype(np.uint8))
    atomic_write(Path(path), lambda tmp: image.save(tmp, format="PNG"))
    return Path(path)
