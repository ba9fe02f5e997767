"""Train the text → portrait model: pixel-space DDPM (epsilon prediction) on RGB in [-1, 1] at 64², a small
diffusers `UNet2DConditionModel` cross-attending to frozen MiniLM hidden states (cached once per caption), captions
dropped to "" with p = `p_uncond` for classifier-free guidance, AdamW + warmup/cosine, min-SNR-γ weights, EMA.

A run folder (training/runs: config.json, metrics.jsonl, status.json, log.txt, checkpoints/, samples/) plus:
    OUT/model/            the folder `engine.text.TextPortraitPipeline.from_pretrained` loads (EMA weights)
    OUT/train_info.json   summary (steps, seconds, losses, parameters)
Resumable (`resume=True`): every random draw is seeded by (seed, step), so a resumed run continues the same stream.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.diffusion.model import ema_update
from engine.io import atomic_write, atomic_write_json
from engine.weights import load_state_into
from training.fit.state import restore_run_checkpoint, save_run_checkpoint
from training.runs import LossGuard, Run
from training.text.config import (ENCODER_NAME, TextTrainConfig, build_scheduler, build_unet, loss_weights,
                                  lr_factor)

KIND = "text"


def save_text_model(unet, scheduler, out: Path, config: TextTrainConfig, extra: dict | None = None,
                    trigger: str | None = None) -> Path:
    """Write the model folder through the pipeline that loads it (one writer of the format)."""
    from engine.text import TextPortraitPipeline

    pipe = TextPortraitPipeline(copy.deepcopy(unet).to("cpu").float(), scheduler, resolution=config.resolution,
                                trigger=trigger, max_tokens=config.max_tokens)
    return pipe.save_pretrained(out, extra={"prediction_type": "epsilon", "guidance_default": 4.0, **(extra or {})},
                                half=config.save_fp16)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] → float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def initial_weights(unet, folder: str) -> None:
    """Load the UNet weights of an existing text model folder (`init_from`) into `unet`."""
    from diffusers import UNet2DConditionModel

    from engine.errors import UserError

    path = Path(folder)
    if not (path / "unet").is_dir():
        raise UserError(f"init_from: {path} is not a text model folder (no unet/)")
    source = UNet2DConditionModel.from_pretrained(str(path / "unet"), torch_dtype=torch.float32)
    load_state_into(unet, source.state_dict(), path / "unet")


class TextTrainer:
    """UNet, EMA, optimiser and step counter on one device; the data and caption states live on that device."""

    def __init__(self, config: TextTrainConfig, run: Run, data, cache, resume: bool = False) -> None:
        self.config, self.run, self.data = config, run, data
        self.device = torch.device(config.device)
        self.images = to_tensor(data.images).to(self.device)
        self.hidden, self.mask = cache.hidden.to(self.device), cache.mask.to(self.device)
        self.caption_rows = torch.tensor([cache.index[c] for c in data.captions], device=self.device)
        self.uncond_row = cache.index[""]
        torch.manual_seed(config.seed)  # the initial weights
        self.unet = build_unet(config)
        # A resumed run with a checkpoint restores its own weights (restore()): init_from would be overwritten.
        if config.init_from and not (resume and run.latest_checkpoint() is not None):
            initial_weights(self.unet, config.init_from)
        self.unet.to(self.device).train()
        self.ema = copy.deepcopy(self.unet).eval().requires_grad_(False)
        self.scheduler = build_scheduler(config)
        self.alphas = self.scheduler.alphas_cumprod.to(self.device)
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                                       enabled=config.bf16 and self.device.type == "cuda")
        self.guard = LossGuard()
        self.step = 0
        self.losses: list[float] = []

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())

    # ------------------------------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        name = save_run_checkpoint(self.run, self.step, {"unet": self.unet, "ema": self.ema}, self.optimizer)
        self.write_samples(self.run.samples_dir / f"{name}.png")

    def restore(self) -> None:
        """Continue from the run's latest checkpoint, if any."""
        step = restore_run_checkpoint(self.run, {"unet": self.unet, "ema": self.ema}, self.optimizer, self.device)
        if step is not None:
            self.step = step

    def write_samples(self, path: Path) -> None:
        """EMA samples (DDIM 10, guidance 4) of the first `sample_captions` training captions, one row."""
        k = min(self.config.sample_captions, len(self.data))
        if k < 1:
            return
        rows = self.caption_rows[:k]
        uncond = torch.tensor([self.uncond_row], device=self.device)
        x = sample(self.ema, self.scheduler.config, self.hidden[rows].float(), self.mask[rows],
                   self.hidden[uncond].float(), self.mask[uncond], steps=10, guidance=4.0,
                   resolution=self.config.resolution, device=self.device)
        pixels = ((torch.cat(list(x.cpu()), dim=2).permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255)
        atomic_write(path, lambda tmp: Image.fromarray(pixels.astype(np.uint8)).save(tmp, format="PNG"))

    # ---------------------------------------------------------------------------------------------- training
    def progress(self) -> float:
        """How far along the schedule: the larger of steps done and wall-clock budget used (resumes included)."""
        budget = self.config.max_minutes * 60.0
        return max(self.step / self.config.steps, self.run.elapsed() / budget if budget > 0 else 0.0)

    def train_step(self) -> float:
        config, device = self.config, self.device
        rng = np.random.default_rng((config.seed, self.step))
        generator = torch.Generator(device).manual_seed(config.seed * 1_000_003 + self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(self.progress(), self.step, config)
        idx = torch.from_numpy(rng.integers(0, len(self.data), config.batch_size)).to(device)
        x0 = self.images[idx]
        if config.flip:
            flip = torch.from_numpy(rng.random(config.batch_size) < 0.5).to(device)
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        drop = torch.from_numpy(rng.random(config.batch_size) < config.p_uncond).to(device)
        rows = torch.where(drop, torch.full_like(idx, self.uncond_row), self.caption_rows[idx])
        noise = torch.randn(x0.shape, generator=generator, device=device)
        t = torch.randint(0, 1000, (config.batch_size,), generator=generator, device=device)
        a = self.alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with self.autocast:
            pred = self.unet(xt, t, encoder_hidden_states=self.hidden[rows].float(),
                             encoder_attention_mask=self.mask[rows]).sample
        per_sample = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weights(self.alphas[t], config.min_snr_gamma)).mean()
        value = self.guard.check(self.step, loss.detach())  # before the update: a NaN never reaches the weights
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        ema_update(self.ema, self.unet, min(config.ema_decay, (1 + self.step) / (10 + self.step)))
        return value  # the guard's float: one device sync per step

    def fit(self) -> None:
        """Train until `steps` or the wall-clock budget; checkpoints; on a stop request saves and raises RunStopped."""
        from tqdm import tqdm

        config, running = self.config, []
        with tqdm(total=config.steps, initial=self.step, unit="step", desc="text", disable=None) as bar:
            while self.step < config.steps and self.progress() < 1.0:
                loss = self.train_step()
                running.append(loss)
                self.losses.append(loss)
                if self.step % config.log_every == 0:
                    self.run.log_metrics(self.step, loss=float(np.mean(running)),
                                         lr=self.optimizer.param_groups[0]["lr"])
                    running = []
                self.run.progress(self.step, config.steps)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if self.step % config.checkpoint_every == 0 or self.run.stop_requested:
                    self.save()
                self.run.check_stop()
        if running:
            self.run.log_metrics(self.step, loss=float(np.mean(running)), lr=self.optimizer.param_groups[0]["lr"])
        if self.step % config.checkpoint_every:
            self.save()


def train_text(data_roots, out: Path, config: TextTrainConfig, log=print, data=None, captions_cache=None,
               resume: bool = False) -> dict | None:
    """Train into the run folder `out` and write `out/model`. `data`/`captions_cache` may be given (tests, device
    runs). Returns the training summary, or None when the run was stopped (resume=True continues it)."""
    from training.text.dataset import encode_captions, load_portrait_set

    out = Path(out)
    t_start = time.time()
    if data is None:
        data = load_portrait_set(data_roots, config.resolution)
    if config.exclude_ids:
        excluded = set(config.exclude_ids)
        data = data.subset([i for i, x in enumerate(data.ids) if x not in excluded])
    cache = captions_cache or encode_captions(data.captions, config.max_tokens)
    run = Run.create(out, KIND, config, resume=resume)
    info = None
    with run.active():  # a stop leaves this block quietly with info None
        trainer = TextTrainer(config, run, data, cache, resume=resume)
        if resume:
            trainer.restore()
        message = (f"text: {len(data)} portraits, {len(cache.texts)} captions ({time.time() - t_start:.1f} s); "
                   f"unet {trainer.parameters / 1e6:.2f} M parameters, blocks {tuple(config.block_out_channels)}, "
                   f"attention at levels {tuple(config.attention_levels)}, device {config.device}")
        run.log(message)
        log(message)
        start_step = trainer.step
        trainer.fit()
        first = trainer.losses[:20]
        info = {"steps": trainer.step, "steps_this_session": trainer.step - start_step,
                "train_seconds": round(run.elapsed(), 1), "avatars": len(data), "parameters": trainer.parameters,
                "batch_size": config.batch_size, "device": str(config.device), "encoder": ENCODER_NAME,
                "first_loss": float(np.mean(first)) if first else None,
                "final_loss": float(np.mean(trainer.losses[-50:])) if trainer.losses else None}
        save_text_model(trainer.ema, trainer.scheduler, out / "model", config, extra={"training": info})
        atomic_write_json(out / "train_info.json", info)
        log(f"trained {trainer.step} steps in {info['train_seconds'] / 60:.1f} min; model in {out / 'model'}")
    return info


@torch.no_grad()
def sample(unet, scheduler_config, hidden, mask, uncond_hidden, uncond_mask, steps: int = 25, guidance: float = 4.0,
           seed: int = 0, resolution: int = 64, device=None) -> torch.Tensor:
    """Batched DDIM (eta 0) with classifier-free guidance, same recipe as TextPortraitPipeline: image b starts
    from torch.Generator().manual_seed(seed + b) (drawn on the CPU). Returns [B, 3, R, R] in [-1, 1]."""
    from diffusers import DDIMScheduler

    sch = DDIMScheduler.from_config(scheduler_config)
    sch.set_timesteps(steps)
    b = hidden.shape[0]
    x = torch.cat([torch.randn((1, 3, resolution, resolution), generator=torch.Generator().manual_seed(seed + i))
                   for i in range(b)]).to(device or hidden.device)
    ctx = torch.cat([hidden, uncond_hidden.expand(b, -1, -1)])
    m = torch.cat([mask, uncond_mask.expand(b, -1)])
    for t in sch.timesteps:
        out = unet(torch.cat([x, x]), t, encoder_hidden_states=ctx, encoder_attention_mask=m).sample
        c, u = out.chunk(2)
        x = sch.step(u + guidance * (c - u), t, x).prev_sample
    return x.clamp(-1, 1)


__all__ = ["KIND", "TextTrainConfig", "TextTrainer", "build_scheduler", "build_unet", "sample", "save_text_model",
           "train_text"]
