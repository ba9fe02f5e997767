"""`AvatarPipeline`: portrait → encoder → base diffusion (low-res triplane) → upsample diffusion (high-res
triplane) → `Avatar`. The one façade the studio and the CLI use.

    pipe = AvatarPipeline.from_pretrained("assets/models/default")
    avatar = pipe("portrait.png", guidance=1.3, steps=10, sampler="ddim", seed=0)
    avatar.save("out/me")

A model folder (DESIGN.md "Models"): `model_index.json` + `decoder/`, `encoder/`, `base/`, `upsample/` (optional),
each `config.json` + safetensors.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from engine.avatar import Avatar
from engine.decoder import TriplaneDecoder, decoder_hash, load_decoder, save_decoder
from engine.diffusion.model import DiffusionStage
from engine.diffusion.sampling import SAMPLERS, guided, sample
from engine.encoders import PortraitEncoder, load_encoder
from engine.errors import GenerationFailed, UserError
from engine.io import atomic_write_json
from engine.portrait import load_portrait, portrait_hash
from engine.weights import INDEX_FILE, read_index, state_hash

FORMAT_VERSION = 1
STAGES = ("cascade", "base")
GUIDANCE_RANGE = (0.0, 30.0)
DEFAULT_GUIDANCE = 1.3  # the authors' base-model guidance
DEFAULT_STEPS = 10  # the authors sample 10 DDIM steps per stage


@dataclass
class Progress:
    """What a per-step callback gets. Return False from the callback to cancel (raises engine.errors.Cancelled)."""

    stage: str  # "base" or "upsample"
    step: int  # 1-based step within the stage
    total: int
    preview: torch.Tensor  # current x0 estimate as a raw triplane [3, C, R, R]


Callback = Callable[[Progress], Any]


def check_settings(guidance: float, steps: int, sampler: str, stages: str, timesteps: int) -> None:
    """The generation settings a user can get wrong, each refused with one clear message."""
    lo, hi = GUIDANCE_RANGE
    if not lo <= float(guidance) <= hi:
        raise UserError(f"guidance must be between {lo:g} and {hi:g} (got {guidance})")
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not 1 <= int(steps) <= timesteps:
        raise UserError(f"steps must be between 1 and {timesteps} (got {steps})")
    if stages not in STAGES:
        raise UserError(f"stages must be one of {', '.join(STAGES)} (got {stages!r})")


class AvatarPipeline:
    def __init__(self, decoder: TriplaneDecoder, encoder: PortraitEncoder, base: DiffusionStage,
                 upsample: DiffusionStage | None = None, info: dict[str, Any] | None = None) -> None:
        if base.config.channels != decoder.config.channels:
            raise UserError(f"base makes {base.config.channels}-channel triplanes but the decoder reads "
                            f"{decoder.config.channels}")
        if upsample is not None and upsample.config.lowres_resolution != base.config.resolution:
            raise UserError(f"upsample expects {upsample.config.lowres_resolution}² input but base makes "
                            f"{base.config.resolution}²")
        self.decoder, self.encoder, self.base, self.upsample = decoder, encoder, base, upsample
        self.info = dict(info or {})

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    # ---------------------------------------------------------------------------------------------- disk
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "AvatarPipeline":
        path = Path(path)
        index = read_index(path, "model")
        components = index.get("components")
        if not isinstance(components, dict) or not all(k in components for k in ("decoder", "encoder", "base")):
            raise UserError(f"{path / INDEX_FILE}: needs components decoder, encoder and base")
        decoder = load_decoder(path / components["decoder"], device)
        encoder = load_encoder(path / components["encoder"], device)
        base = DiffusionStage.load(path / components["base"], device)
        upsample = DiffusionStage.load(path / components["upsample"], device) if components.get("upsample") else None
        expected = index.get("decoder_hash")
        if expected and expected != decoder_hash(decoder):
            raise UserError(f"{path}: the decoder does not match the one the diffusion model was trained with "
                            f"({decoder_hash(decoder)} vs {expected})")
        return cls(decoder, encoder, base, upsample, {**index, "path": str(path)})

    def save_pretrained(self, path: str | Path, extra: dict[str, Any] | None = None, half: bool = False) -> Path:
        """Write the model folder. `half`: diffusion weights stored in fp16 (a shippable size; the decoder and
        the normalisation statistics stay fp32). Loading always gives fp32 modules."""
        path = Path(path)
        save_decoder(path / "decoder", self.decoder)
        self.encoder.save(path / "encoder")
        self.base.save(path / "base", half=half)
        components = {"decoder": "decoder", "encoder": "encoder", "base": "base"}
        if self.upsample is not None:
            self.upsample.save(path / "upsample", half=half)
            components["upsample"] = "upsample"
        index = {"_class_name": "AvatarPipeline", "format_version": FORMAT_VERSION, "components": components,
                 "decoder_hash": decoder_hash(self.decoder), **(extra or {})}
        atomic_write_json(path / INDEX_FILE, index)
        self.info = {**index, "path": str(path)}
        return path

    def model_hash(self) -> str:
        """One hash over every component's weights (what avatar.json records)."""
        parts = [decoder_hash(self.decoder)] + [state_hash(m.state_dict()) for m in (self.encoder, self.base,
                                                                                     self.upsample) if m is not None]
        return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]

    # ---------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def encode(self, portrait: Any) -> dict[str, torch.Tensor]:
        """A portrait (path, PIL image, uint8 array or [3, H, W] tensor in [0, 1]) → encoder features, batch 1."""
        if isinstance(portrait, torch.Tensor):
            image = portrait
        else:
            image = load_portrait(portrait, self.encoder.image_size, check_content=True)
        return self.encoder(image[None].to(self.device))

    def __call__(self, portrait: Any, guidance: float = DEFAULT_GUIDANCE, steps: int = DEFAULT_STEPS,
                 sampler: str = "ddim", seed: int = 0, stages: str = "cascade", callback: Callback | None = None,
                 upsample_steps: int | None = None) -> Avatar:
        started = time.perf_counter()
        features = self.encode(portrait)
        encoded = time.perf_counter()
        record = {"mode": "portrait", "input_hash": _input_hash(portrait)}
        if isinstance(portrait, (str, Path)):
            record["input"] = str(portrait)
        return self._generate(features, guidance, steps, sampler, seed, stages, callback, upsample_steps,
                              record, {"encode_s": encoded - started}, started)

    def unconditional(self, seed: int = 0, steps: int = DEFAULT_STEPS, sampler: str = "ddim",
                      stages: str = "cascade", callback: Callback | None = None,
                      upsample_steps: int | None = None) -> Avatar:
        """An avatar from the null condition alone (what condition dropping in training teaches)."""
        return self._generate(None, 1.0, steps, sampler, seed, stages, callback, upsample_steps,
                              {"mode": "unconditional"}, {}, time.perf_counter())

    def _generate(self, features, guidance, steps, sampler, seed, stages, callback, upsample_steps, record,
                  timings, started) -> Avatar:
        upsample_steps = steps if upsample_steps is None else upsample_steps
        if stages == "cascade" and self.upsample is None:
            raise UserError("this model has no upsample stage; use stages='base'")
        check_settings(guidance, steps, sampler, stages, self.base.config.schedule.timesteps)
        if stages == "cascade":
            check_settings(1.0, upsample_steps, sampler, stages, self.upsample.config.schedule.timesteps)
        generator = torch.Generator().manual_seed(int(seed))
        t0 = time.perf_counter()
        planes = sample_stage(self.base, features, guidance=guidance, steps=steps, sampler=sampler,
                              generator=generator, callback=callback, name="base")
        timings["base_s"] = time.perf_counter() - t0
        check_finite(planes, "base", sampler, steps)
        if stages == "cascade":
            t0 = time.perf_counter()
            # the upsampler runs conditional without guidance, as the authors sample it
            planes = sample_stage(self.upsample, features, guidance=1.0, steps=upsample_steps, sampler=sampler,
                                  generator=generator, callback=callback, name="upsample", lowres=planes)
            timings["upsample_s"] = time.perf_counter() - t0
            check_finite(planes, "upsample", sampler, upsample_steps)
        timings["total_s"] = time.perf_counter() - started
        settings = {"guidance": float(guidance), "steps": int(steps), "upsample_steps": int(upsample_steps),
                    "sampler": sampler, "seed": int(seed), "stages": stages}
        metadata = {**record, **settings, "seed": int(seed), "model_hash": self.model_hash(),
                    "model": self.info.get("path"), "timings": {k: round(v, 4) for k, v in timings.items()}}
        return Avatar(planes[0].float(), self.decoder, metadata)


def check_finite(planes: torch.Tensor, stage: str, sampler: str, steps: int) -> None:
    """A triplane with NaN/inf would render as nothing (or garbage) and poison a library: refuse it here, before
    an `Avatar` exists, so neither the CLI nor the studio can save it."""
    bad = int((~torch.isfinite(planes)).sum())
    if bad:
        raise GenerationFailed(f"the {stage} stage produced {bad} NaN/infinite triplane values ({sampler}, {steps} "
                               "steps): the model or the sampler diverged and nothing was saved; try another "
                               "sampler, seed or guidance, or check the model's weights")


def sample_stage(stage: DiffusionStage, features: dict[str, torch.Tensor] | None, *, guidance: float, steps: int,
                 sampler: str, generator: torch.Generator, callback: Callback | None = None, name: str = "base",
                 lowres: torch.Tensor | None = None) -> torch.Tensor:
    """Sample one stage → raw triplanes [1, 3, C, R, R]. Classifier-free guidance runs the conditional and the
    null-condition passes as one batch of two."""
    config = stage.config
    channels, size = config.channels, config.resolution
    lowres_in = stage.lowres_input(lowres) if lowres is not None else None
    guide = features is not None and float(guidance) != 1.0

    def predict(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not guide:
            return stage(xt, t, features, lowres=lowres_in)
        both = {k: torch.cat([v, v]) for k, v in features.items()}
        drop = torch.tensor([False] * len(xt) + [True] * len(xt), device=xt.device)
        low = torch.cat([lowres_in, lowres_in]) if lowres_in is not None else None
        out = stage(torch.cat([xt, xt]), torch.cat([t, t]), both, drop=drop, lowres=low)
        cond, uncond = out.chunk(2)
        return guided(cond, uncond, float(guidance), channels)

    def denoise(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return clip_to_triplane_range(stage, predict(xt, t), xt, t)

    def on_step(index: int, total: int, timestep: Any, pred_x0: torch.Tensor) -> bool | None:
        if callback is None:
            return None
        return callback(Progress(name, index + 1, total, stage.denormalize(pred_x0)[0].detach()))

    x = sample(denoise, (1, channels, size, 3 * size), stage.betas(), sampler=sampler, steps=steps,
               prediction_type=config.prediction_type, learned_variance=stage.learned_variance,
               generator=generator, device=stage.norm_mean.device, clip_range=config.clip_range or None,
               callback=on_step)
    return stage.denormalize(x)


def clip_to_triplane_range(stage: DiffusionStage, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                           ) -> torch.Tensor:
    """Clip the model's x0 estimate to the range fitted triplanes live in ([-1, 1] per texel, as the authors clip)
    and re-express the output in the model's parameterisation, so every scheduler sees a consistent prediction.
    Without it, a few-step ε-sampler amplifies ε errors by √(ᾱ_prev/ᾱ_t) ~ 1e5 on the first step."""
    channels, kind = stage.config.channels, stage.config.prediction_type
    x0 = stage.diffusion.predict_x0(output[:, :channels], xt, t, kind)
    x0 = stage.normalize(stage.denormalize(x0))  # denormalize clamps to [-1, 1]
    prediction = x0 if kind == "sample" else stage.diffusion.predict_eps(x0, xt, t)
    return torch.cat([prediction, output[:, channels:]], 1)


def _input_hash(portrait: Any) -> str | None:
    if isinstance(portrait, torch.Tensor):
        return hashlib.sha256(portrait.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    if isinstance(portrait, np.ndarray) or isinstance(portrait, (str, Path)):
        return portrait_hash(portrait)[:16]
    return None


__all__ = ["AvatarPipeline", "Progress", "check_finite", "sample_stage"]
