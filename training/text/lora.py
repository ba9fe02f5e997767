"""LoRA finetune of a saved text → portrait model on a few frontal portraits + captions with a trigger phrase
(peft LoRA on the UNet's attention projections to_q/to_k/to_v/to_out.0, base weights frozen), written as
safetensors by `engine.text.lora.save_lora` (the file `TextPortraitPipeline.load_lora` reads).

    train_lora("assets/models/text_default", "data/style40", "runs/lora_style", LoraTrainConfig(trigger="sks style"))
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.config import ConfigError, ConfigMixin
from engine.io import atomic_write_json


@dataclass
class LoraTrainConfig(ConfigMixin):
    rank: int = 8
    alpha: float = 8.0
    lr: float = 1e-3
    steps: int = 300
    batch_size: int = 8
    images: int = 40
    """Use the first K portraits of the folder (~40 frontal images)."""
    trigger: str = "sks style"
    p_uncond: float = 0.1
    flip: bool = True
    seed: int = 0
    log_every: int = 25

    def validate(self) -> None:
        for name in ("rank", "steps", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")


def load_base(model: Path):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    model = Path(model)
    index = json.loads((model / "model_index.json").read_text())
    unet = UNet2DConditionModel.from_pretrained(str(model / "unet"), torch_dtype=torch.float32, use_safetensors=True)
    scheduler = DDPMScheduler.from_pretrained(str(model / "scheduler"))
    return unet, scheduler, index


def train_lora(base: Path, data_root: Path, out: Path, config: LoraTrainConfig, limit: int | None = None,
               log=print, data=None, encoder=None) -> dict:
    """Finetune a LoRA; writes OUT/lora.safetensors (+ lora_info.json). Returns the info dict."""
    from engine.text.lora import add_lora, save_lora
    from training.text.dataset import encode_captions, load_portrait_set
    from training.text.train import to_tensor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    unet, scheduler, index = load_base(base)
    res = int(index.get("resolution", 64))
    if data is None:
        data = load_portrait_set([data_root], res, limit=limit or config.images, cache=False)
    captions = [f"{config.trigger}, {c}" if config.trigger else c for c in data.captions]
    cache = encode_captions(captions, int(index.get("max_tokens", 77)), encoder=encoder)
    images = to_tensor(data.images)
    unet.requires_grad_(False)
    add_lora(unet, config.rank, config.alpha)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    unet.train()
    opt = torch.optim.AdamW(params, lr=config.lr)
    alphas = scheduler.alphas_cumprod
    losses, t0 = [], time.time()
    for step in range(1, config.steps + 1):
        idx = rng.integers(0, len(data), config.batch_size)
        x0 = images[idx]
        if config.flip:
            flip = torch.from_numpy(rng.random(config.batch_size) < 0.5)
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        hidden, mask = cache.lookup([("" if rng.random() < config.p_uncond else captions[i]) for i in idx])
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch_size,))
        a = alphas[t].view(-1, 1, 1, 1)
        pred = unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=hidden,
                    encoder_attention_mask=mask).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % config.log_every == 0:
            log(f"lora step {step} loss {np.mean(losses[-config.log_every:]):.4f} {time.time() - t0:.0f}s")
    unet.eval()
    path = save_lora(unet, out / "lora.safetensors", rank=config.rank, alpha=config.alpha,
                     trigger=config.trigger or None, extra={"steps": config.steps, "images": len(data)})
    k = max(1, min(len(losses) // 4, 25))
    info = {"steps": config.steps, "images": len(data), "path": str(path), "first_loss": float(np.mean(losses[:k])),
            "final_loss": float(np.mean(losses[-k:])), "seconds": round(time.time() - t0, 1),
            "trigger": config.trigger, "config": config.to_dict()}
    atomic_write_json(out / "lora_info.json", info)
    return info
