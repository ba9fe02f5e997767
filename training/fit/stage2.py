"""Stage 2 (Sec. 3.1): with the shared decoder frozen, fit each avatar's triplane on its own.

Avatars are independent, so the work is sharded: over local worker processes (`--workers`), or over ranks
under `torchrun` (rank r takes avatars r, r+W, …). A finished avatar is a triplane file written atomically;
a rerun with `--resume` skips those, so a killed run continues where it stopped.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.decoder import TriplaneDecoder, decoder_hash
from engine.io import atomic_write_json
from engine.triplane import init_triplane, save_triplane
from training.fit.config import FitConfig
from training.fit.data import RaySampler, load_eval_views, load_views
from training.fit.evaluate import evaluate
from training.fit.step import fit_step, triplane_optimizer
from training.runs import LossGuard, RunStopped

TRIPLANE_DIR = "triplanes"


@dataclass
class AvatarResult:
    avatar: str
    psnr: float
    ssim: float
    seconds: float
    steps: int


def triplane_path(out: Path, avatar: str) -> Path:
    return Path(out) / TRIPLANE_DIR / f"{avatar}.safetensors"


def fit_triplane(views, decoder: TriplaneDecoder, config: FitConfig, generator: torch.Generator,
                 on_step: Callable[[int, float], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False, name: str = "") -> torch.Tensor:
    """A fresh triplane fitted to `views` (AvatarViews on the config's device) with `decoder` frozen: Adam on the
    planes, lr decaying geometrically to `stage2_final_lr`, `stage2_steps` steps. Returns the detached planes."""
    device = torch.device(config.device)
    occupancy = views.occupancy(config.occupancy_size)
    planes = torch.nn.Parameter(init_triplane(config.channels, config.triplane_resolution,
                                              std=config.triplane_init_std, generator=generator, device=device))
    optimizer = triplane_optimizer(planes, config.triplane_lr)
    sampler, guard = RaySampler(views, generator), LossGuard()
    for step in range(config.stage2_steps):
        for group in optimizer.param_groups:
            group["lr"] = config.triplane_lr * config.stage2_final_lr ** (step / max(config.stage2_steps - 1, 1))
        if should_stop():
            raise RunStopped(f"stopped while fitting {name}")
        result = fit_step(planes, decoder, sampler, occupancy, config, [optimizer], generator)
        guard.check(step, result.loss)
        if on_step:
            on_step(step, result.psnr)
    return planes.detach()


def fit_avatar(folder: Path, decoder: TriplaneDecoder, config: FitConfig, out: Path, seed: int,
               on_step: Callable[[int, float], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> AvatarResult:
    """Fit one avatar's triplane with `decoder` frozen; write it (fp16, with the decoder hash) and its scores."""
    start = time.perf_counter()
    device = torch.device(config.device)
    views = load_views(folder).to(device)
    test = load_eval_views(folder, config.eval_views).to(device)
    planes = fit_triplane(views, decoder, config, torch.Generator().manual_seed(seed), on_step, should_stop,
                          folder.name)
    scores = evaluate(planes, decoder, test, config.render)
    outcome = AvatarResult(folder.name, scores["psnr"], scores["ssim"], time.perf_counter() - start,
                           config.stage2_steps)
    path = triplane_path(out, folder.name)
    atomic_write_json(path.with_suffix(".json"), outcome.__dict__)
    save_triplane(path, planes, decoder_hash(decoder), {"avatar": folder.name, **outcome.__dict__})
    return outcome


def frozen(decoder: TriplaneDecoder) -> TriplaneDecoder:
    """The decoder with gradients off: stage 2 never changes it."""
    decoder.eval()
    for p in decoder.parameters():
        p.requires_grad_(False)
    return decoder


def pending_avatars(avatars: list[Path], out: Path) -> list[Path]:
    return [a for a in avatars if not triplane_path(out, a.name).exists()]


def collect_results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(out) / TRIPLANE_DIR).glob("*.json"))]
