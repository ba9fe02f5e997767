"""Train our own small VAE (diffusers AutoencoderKL) on the dataset's portraits in a run folder (kind "vae").

Loss = L1 + perceptual_weight · MobileNetV2 feature distance (LPIPS substitute) + kl_weight · KL, on portraits
loaded like the encoders load them (engine.portrait) with random horizontal flips. The data order, flips and
posterior noise are pure functions of (seed, step), so a stopped and resumed run equals an uninterrupted one.
At the end: `out/encoder/` (a VAEEncoder component, engine.encoders) and `out/autoencoder/` (the full VAE,
diffusers format), scored on held-out portraits (the last 10% of avatars, at least one).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image

from engine.encoders import VAEEncoder
from engine.errors import UserError
from engine.io import atomic_write
from engine.metrics import PerceptualDistance, psnr
from engine.portrait import load_portrait
from training.data.format import PORTRAIT_FILE, avatar_dirs
from training.fit.state import restore_run_checkpoint, save_run_checkpoint
from training.runs import LossGuard, Run
from training.vae.config import VAEConfig

KIND = "vae"
HOLDOUT_FRACTION = 0.1
SAMPLE_COUNT = 4
EVAL_BATCH = 8
_ORDER, _FLIPS, _NOISE = 0, 1, 2  # independent random streams derived from (seed, stream, index)


# ---------------------------------------------------------------------------------------------------- data
def portrait_paths(data: Path, limit: int | None = None) -> list[Path]:
    """portrait.png of the dataset's avatars (the first `limit` avatars when given) that have one."""
    avatars = avatar_dirs(Path(data))
    avatars = avatars[:limit] if limit else avatars
    paths = [a / PORTRAIT_FILE for a in avatars if (a / PORTRAIT_FILE).is_file()]
    if not paths:
        raise UserError(f"{data}: no avatar has a {PORTRAIT_FILE}; the VAE has nothing to train on")
    return paths


def split_holdout(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training, held-out): the last 10% (≥ 1) are held out; a single portrait serves as both."""
    if len(paths) == 1:
        return paths, paths
    held = max(1, round(len(paths) * HOLDOUT_FRACTION))
    return paths[:-held], paths[-held:]


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


@lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    return tuple(int(i) for i in _rng(seed, _ORDER, epoch).permutation(n))


def batch_plan(n: int, batch: int, step: int, seed: int) -> tuple[list[int], list[bool]]:
    """(portrait indices, flip flags) of `step`: consecutive slices of per-epoch permutations, so every
    portrait is seen once per epoch; everything depends only on (seed, step)."""
    indices = []
    for position in range(step * batch, (step + 1) * batch):
        epoch, k = divmod(position, n)
        indices.append(_epoch_order(n, seed, epoch)[k])
    flips = (_rng(seed, _FLIPS, step).random(batch) < 0.5).tolist()
    return indices, flips


def load_batch(paths: list[Path], size: int, flips: list[bool] | None = None) -> torch.Tensor:
    """`[B, 3, size, size]` in [0, 1]; images with a True flag are mirrored left-right."""
    images = torch.stack([load_portrait(p, size) for p in paths])
    if flips:
        mask = torch.tensor(flips)
        images[mask] = images[mask].flip(-1)
    return images


def noise_generator(seed: int, step: int) -> torch.Generator:
    """CPU generator for the posterior sample of `step` (diffusers draws on the CPU and moves the noise)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, _NOISE, step]).generate_state(1)[0]))


# --------------------------------------------------------------------------------------------------- model
def build_autoencoder(config: VAEConfig) -> AutoencoderKL:
    with torch.random.fork_rng(devices=[]):  # the initial weights follow config.seed only
        torch.manual_seed(config.seed)
        return AutoencoderKL(**config.autoencoder_kwargs())


def vae_losses(vae: AutoencoderKL, images: torch.Tensor, perceptual: PerceptualDistance | None,
               generator: torch.Generator, config: VAEConfig) -> dict[str, torch.Tensor]:
    """{"loss", "l1", "kl", "perceptual"} for images `[B, 3, H, W]` in [0, 1] (the VAE works in [-1, 1])."""
    posterior = vae.encode(images * 2 - 1).latent_dist
    recon = (vae.decode(posterior.sample(generator=generator)).sample + 1) / 2
    l1 = (recon - images).abs().mean()
    kl = posterior.kl().mean()
    perc = perceptual(recon, images).mean() if perceptual is not None else torch.zeros((), device=images.device)
    loss = l1 + config.perceptual_weight * perc + config.kl_weight * kl
    return {"loss": loss, "l1": l1, "kl": kl, "perceptual": perc}


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] through the VAE with the posterior mean (no sampling noise), clamped to [0, 1]."""
    latent = vae.encode(images * 2 - 1).latent_dist.mode()
    return ((vae.decode(latent).sample + 1) / 2).clamp(0, 1)


@torch.no_grad()
def evaluate(vae: AutoencoderKL, paths: list[Path], size: int, device: str) -> dict[str, float]:
    """Mean L1 and PSNR (dB) of held-out portraits reconstructed through the VAE."""
    vae.eval()
    l1, scores = [], []
    for i in range(0, len(paths), EVAL_BATCH):
        images = load_batch(paths[i:i + EVAL_BATCH], size).to(device)
        recon = reconstruct(vae, images)
        l1.append((recon - images).abs().flatten(1).mean(1))
        scores.append(psnr(recon, images))
    return {"l1": torch.cat(l1).mean().item(), "psnr": torch.cat(scores).mean().item()}


def write_sample_grid(path: Path, inputs: torch.Tensor, recon: torch.Tensor) -> None:
    """PNG with the inputs `[K, 3, S, S]` in the top row and their reconstructions below."""
    rows = [torch.cat(list(batch.clamp(0, 1).cpu()), dim=2) for batch in (inputs, recon)]  # [3, S, K·S] each
    pixels = (torch.cat(rows, dim=1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    atomic_write(Path(path), lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


# ------------------------------------------------------------------------------------------------- trainer
class VAETrainer:
    """The VAE, its optimizer and the step counter; `fit()` trains to `config.steps` with checkpoints."""

    def __init__(self, config: VAEConfig, run: Run, train_paths: list[Path], sample_paths: list[Path]) -> None:
        self.config, self.run, self.paths, self.sample_paths = config, run, train_paths, sample_paths
        self.device = config.device
        self.vae = build_autoencoder(config).to(self.device)
        self.perceptual = PerceptualDistance().to(self.device) if config.perceptual_weight > 0 else None
        self.optimizer = torch.optim.Adam(self.vae.parameters(), lr=config.lr)
        self.guard = LossGuard()
        self.step = 0

    def save(self) -> None:
        """Checkpoint (model.* weights, optim.* Adam state, step in meta) and a sample grid."""
        name = save_run_checkpoint(self.run, self.step, {"model": self.vae}, self.optimizer)
        images = load_batch(self.sample_paths, self.config.image_size).to(self.device)
        write_sample_grid(self.run.samples_dir / f"{name}.png", images, reconstruct(self.vae, images))

    def restore(self) -> None:
        """Continue from the run's latest checkpoint, if any."""
        step = restore_run_checkpoint(self.run, {"model": self.vae}, self.optimizer, self.device)
        if step is not None:
            self.step = step

    def train_step(self) -> dict[str, float]:
        indices, flips = batch_plan(len(self.paths), self.config.batch_size, self.step, self.config.seed)
        images = load_batch([self.paths[i] for i in indices], self.config.image_size, flips).to(self.device)
        losses = vae_losses(self.vae, images, self.perceptual, noise_generator(self.config.seed, self.step),
                            self.config)
        self.guard.check(self.step, losses["loss"].detach())  # before the update: a NaN never reaches the weights
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        self.step += 1
        return {k: v.item() for k, v in losses.items()}

    def fit(self) -> None:
        """Train to config.steps; logs, checkpoints, and on a stop request saves and raises RunStopped."""
        from tqdm import tqdm

        total, config = self.config.steps, self.config
        self.vae.train()
        with tqdm(total=total, initial=min(self.step, total), unit="step", desc="vae", disable=None) as bar:
            while self.step < total:
                values = self.train_step()
                if self.step % config.log_every == 0 or self.step == total:
                    self.run.log_metrics(self.step, values, lr=self.optimizer.param_groups[0]["lr"])
                self.run.progress(self.step, total)
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.4f}")
                if self.step % config.checkpoint_every == 0 or self.step == total or self.run.stop_requested:
                    self.save()
                self.run.check_stop()


def write_outputs(vae: AutoencoderKL, out: Path, config: VAEConfig) -> None:
    """out/encoder (VAEEncoder component: encoder weights only) and out/autoencoder (full diffusers VAE)."""
    VAEEncoder.from_autoencoder(vae, image_size=config.image_size).save(out / "encoder")
    vae.save_pretrained(out / "autoencoder", safe_serialization=True)


def train_vae(data: Path, out: Path, config: VAEConfig, resume: bool = False,
              limit: int | None = None) -> dict[str, Any] | None:
    """Train the VAE on `data`'s portraits into the run folder `out`; returns {"steps", "l1", "psnr"} on the
    held-out portraits, or None when the run was stopped (a checkpoint is saved; resume=True continues)."""
    out = Path(out)
    train_paths, held = split_holdout(portrait_paths(Path(data), limit))
    run = Run.create(out, KIND, config, resume=resume)
    result = None
    with run.active():  # a stop leaves this block quietly with result None
        trainer = VAETrainer(config, run, train_paths, (held + train_paths)[:SAMPLE_COUNT])
        if resume:
            trainer.restore()
        run.log(f"vae: {len(train_paths)} training portraits, {len(held)} held out, {config.steps} steps")
        trainer.fit()
        write_outputs(trainer.vae, out, config)
        scores = evaluate(trainer.vae, held, config.image_size, config.device)
        result = {"steps": trainer.step, **scores}
        run.log_metrics(trainer.step, final_l1=scores["l1"], final_psnr=scores["psnr"])
    return result


__all__ = ["KIND", "VAETrainer", "batch_plan", "evaluate", "portrait_paths", "split_holdout", "train_vae",
           "vae_losses"]
