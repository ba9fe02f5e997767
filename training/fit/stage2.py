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
from engine.errors import UserError
from engine.io import atomic_write_json
from engine.triplane import init_triplane, load_triplane, save_triplane
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


def initial_triplane(config: FitConfig, generator: torch.Generator, warm: torch.Tensor | None = None,
                     ) -> torch.Tensor:
    """Where a fit starts: N(0, init std²) noise, added to the warm-start triplane when there is one."""
    noise = init_triplane(config.channels, config.triplane_resolution, std=config.triplane_init_std,
                          generator=generator, device=config.device)
    return noise if warm is None else warm.to(noise.device) + noise


def stage2_lr(config: FitConfig, step: int) -> float:
    """The triplane lr at `step`: decays geometrically from triplane_lr to stage2_final_lr × it at the last step."""
    return config.triplane_lr * config.stage2_final_lr ** (step / max(config.stage2_steps - 1, 1))


def fit_triplane(views, decoder: TriplaneDecoder, config: FitConfig, generator: torch.Generator,
                 on_step: Callable[[int, float], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False, name: str = "",
                 warm: torch.Tensor | None = None) -> torch.Tensor:
    """A fresh triplane fitted to `views` (AvatarViews on the config's device) with `decoder` frozen: Adam on the
    planes, lr decaying geometrically to `stage2_final_lr`, `stage2_steps` steps. Returns the detached planes."""
    occupancy = views.occupancy(config.occupancy_size)
    planes = torch.nn.Parameter(initial_triplane(config, generator, warm))
    optimizer = triplane_optimizer(planes, config.triplane_lr)
    sampler, guard = RaySampler(views, generator), LossGuard()
    for step in range(config.stage2_steps):
        for group in optimizer.param_groups:
            group["lr"] = stage2_lr(config, step)
        if should_stop():
            raise RunStopped(f"stopped while fitting {name}")
        result = fit_step(planes, decoder, sampler, occupancy, config, [optimizer], generator)
        guard.check(step, result.loss)
        if on_step:
            on_step(step, result.psnr)
    return planes.detach()


def fit_avatar(folder: Path, decoder: TriplaneDecoder, config: FitConfig, out: Path, seed: int,
               on_step: Callable[[int, float], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False, warm: torch.Tensor | None = None) -> AvatarResult:
    """Fit one avatar's triplane with `decoder` frozen; write it (fp16, with the decoder hash) and its scores."""
    start = time.perf_counter()
    device = torch.device(config.device)
    views = load_views(folder).to(device)
    planes = fit_triplane(views, decoder, config, torch.Generator().manual_seed(seed), on_step, should_stop,
                          folder.name, warm)
    return finish_avatar(folder, planes, decoder, config, out, start, config.stage2_steps)


def finish_avatar(folder: Path, planes: torch.Tensor, decoder: TriplaneDecoder, config: FitConfig, out: Path,
                  start: float, steps: int) -> AvatarResult:
    """Score a fitted triplane on the avatar's held-out views and write it with its scores (atomic)."""
    test = load_eval_views(folder, config.eval_views).to(planes.device)
    scores = evaluate(planes, decoder, test, config.render)
    outcome = AvatarResult(folder.name, scores["psnr"], scores["ssim"], time.perf_counter() - start, steps)
    path = triplane_path(out, folder.name)
    atomic_write_json(path.with_suffix(".json"), outcome.__dict__)
    save_triplane(path, planes, decoder_hash(decoder), {"avatar": folder.name, **outcome.__dict__})
    return outcome


def warm_start(source: str, decoder: TriplaneDecoder, config: FitConfig) -> torch.Tensor | None:
    """The mean of the triplane file(s) at `source` (a file or a folder of them, all fitted with `decoder`);
    None for an empty source."""
    if not source:
        return None
    source_path = Path(source)
    files = sorted(source_path.glob("*.safetensors")) if source_path.is_dir() else [source_path]
    if not files:
        raise UserError(f"{source}: no triplane files to warm-start from")
    expected, total = decoder_hash(decoder), None
    for path in files:
        planes, _ = load_triplane(path, expect_decoder_hash=expected)
        total = planes if total is None else total + planes
    mean = total / len(files)
    wanted = [3, config.channels, config.triplane_resolution, config.triplane_resolution]
    if list(mean.shape) != wanted:
        raise UserError(f"{source}: triplanes of shape {list(mean.shape)}, this fit makes {wanted}")
    return mean.to(config.device)


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
