"""Sampling with diffusers' schedulers (DDPM ancestral, DDIM, DPM-Solver++ 2M) over any denoiser.

`denoise(x_t [B, C, ...], t LongTensor [B]) -> [B, C or 2C, ...]` is all a sampler needs; classifier-free guidance
lives in the caller's denoise (`guided` combines the two outputs). Timesteps are "trailing": the first step is at
t = T−1 (pure noise even for few steps) and the last lands on the clean sample (ᾱ = 1).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Literal

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from engine.diffusion.gaussian import GaussianDiffusion, PredictionType, check_prediction_type
from engine.errors import Cancelled, UserError

Sampler = Literal["ddpm", "ddim", "dpmsolver++"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpmsolver++")
# our prediction names → diffusers' (identical today; kept explicit so a rename stays in one place)
_DIFFUSERS_PREDICTION = {"epsilon": "epsilon", "sample": "sample"}

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, int, torch.Tensor], "bool | None"]


class _ClippedDPMSolver(DPMSolverMultistepScheduler):
    """DPM-Solver++ whose x0 estimates are clamped to ±clip_range (diffusers offers only dynamic thresholding)."""

    clip_range: float | None = None

    def convert_model_output(self, model_output, *args, sample=None, **kwargs):
        x0 = super().convert_model_output(model_output, *args, sample=sample, **kwargs)
        return x0 if self.clip_range is None else x0.clamp(-self.clip_range, self.clip_range)


class _Float64DDIM(DDIMScheduler):
    """DDIM (Song et al. 2021, Eq. 12) with its per-step coefficients in float64 and both square roots clamped at 0.

    At η = 1 the direction term's weight 1 − ᾱ_prev − σ² is, in exact arithmetic, (1−ᾱ_prev)²·ᾱ_t / (ᾱ_prev(1−ᾱ_t)):
    ~1e-9 on the first step of a schedule whose ᾱ_T is tiny. diffusers computes it in float32 from terms of order
    one, and on some CPUs it rounds below zero, so its square root made the whole sample NaN.
    """

    def step(self, model_output, timestep, sample, eta: float = 0.0, generator=None, **_unused):
        t = int(timestep)
        prev = t - self.config.num_train_timesteps // self.num_inference_steps
        alpha_bar = self._alpha_bar64()
        a_t = float(alpha_bar[t])
        a_prev = float(alpha_bar[prev]) if prev >= 0 else 1.0  # set_alpha_to_one
        x0, eps = self._x0_and_eps(model_output, sample, a_t)
        variance = max((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev), 0.0)
        sigma = eta * math.sqrt(variance)
        direction = math.sqrt(max(1.0 - a_prev - sigma * sigma, 0.0))
        prev_sample = math.sqrt(a_prev) * x0 + direction * eps
        if eta > 0:
            noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device,
                                 dtype=model_output.dtype)
            prev_sample = prev_sample + sigma * noise
        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)

    def _alpha_bar64(self) -> torch.Tensor:
        if getattr(self, "_alpha_bar_cache", None) is None:
            self._alpha_bar_cache = torch.cumprod(1.0 - self.betas.to(torch.float64), 0)
        return self._alpha_bar_cache

    def _x0_and_eps(self, output: torch.Tensor, x: torch.Tensor, a_t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, ε) from the model output; x0 clipped when the scheduler clips (ε kept, as diffusers does)."""
        if self.config.prediction_type == "epsilon":
            eps = output
            x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        else:
            x0 = output
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
        if self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        return x0, eps


def make_scheduler(sampler: Sampler, betas: torch.Tensor, prediction_type: PredictionType = "epsilon",
                   learned_variance: bool = False, clip_range: float | None = None):
    """A diffusers scheduler over the T = len(betas) training steps, trailing timestep spacing.

    ddpm: variance "learned_range" (the model's 2C output) or "fixed_small" (posterior β̃). ddim: ᾱ_prev = 1 at the
    last step, eta given at step time. dpmsolver++: 2nd-order multistep, deterministic. DDIM and DPM-Solver++
    must be given only the first C channels of a learned-variance output.
    """
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
    check_prediction_type(prediction_type)
    _check_clip_range(clip_range)
    common = {"num_train_timesteps": len(betas), "trained_betas": _as_float32_list(betas),
              "prediction_type": _DIFFUSERS_PREDICTION[prediction_type], "timestep_spacing": "trailing"}
    clip_sample_range = 1.0 if clip_range is None else float(clip_range)
    clip = {"clip_sample": clip_range is not None, "clip_sample_range": clip_sample_range}
    if sampler == "ddpm":
        variance = "learned_range" if learned_variance else "fixed_small"
        return DDPMScheduler(**common, **clip, variance_type=variance)
    if sampler == "ddim":
        return _Float64DDIM(**common, **clip, set_alpha_to_one=True)
    scheduler = _ClippedDPMSolver(**common, algorithm_type="dpmsolver++", solver_order=2)
    scheduler.clip_range = clip_range
    return scheduler


def _as_float32_list(betas: torch.Tensor) -> list[float]:
    return torch.as_tensor(betas, dtype=torch.float64).cpu().to(torch.float32).tolist()


def sampling_timesteps(num_train_timesteps: int, steps: int) -> torch.Tensor:
    """Descending LongTensor [steps] from T−1 to k−1, k = T // steps (evenly spaced, "trailing").

    Ending at k−1 matters for DDIM: diffusers steps DDIM back by the fixed stride k, so the last step then
    reaches t = −1 (ᾱ = 1) even when steps does not divide T. When it does, this is exactly diffusers' trailing.
    """
    stride = num_train_timesteps // steps
    if steps == 1:
        return torch.tensor([num_train_timesteps - 1], dtype=torch.long)
    points = np.linspace(num_train_timesteps - 1, stride - 1, steps)
    return torch.from_numpy(np.floor(points + 0.5).astype(np.int64))


def _set_timesteps(scheduler, sampler: str, timesteps: torch.Tensor) -> None:
    if sampler == "ddim":  # DDIMScheduler.set_timesteps takes no custom list; it only needs num_inference_steps
        scheduler.set_timesteps(len(timesteps))
        scheduler.timesteps = timesteps.clone()
    else:
        with warnings.catch_warnings():  # diffusers' DPM solver calls np.array(tensor) the way numpy 2 deprecates
            warnings.filterwarnings("ignore", message=".*__array__ implementation", category=DeprecationWarning)
            scheduler.set_timesteps(timesteps=timesteps.tolist())


def _check_clip_range(clip_range: float | None) -> None:
    if clip_range is not None and not clip_range > 0:
        raise UserError(f"clip_range must be > 0, or None for no clipping (got {clip_range})")


def _check_request(sampler: str, steps: int, num_train_timesteps: int, eta: float) -> None:
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
    if not isinstance(steps, int) or not 1 <= steps <= num_train_timesteps:
        raise UserError(f"steps must be a whole number between 1 and {num_train_timesteps} (got {steps!r})")
    if not 0.0 <= eta <= 1.0:  # above 1, DDIM's σ exceeds the noise the step has room for
        raise UserError(f"eta must be between 0 and 1 (got {eta})")


def _initial_noise(shape, generator, device, dtype, initial_noise) -> torch.Tensor:
    if initial_noise is not None:
        if tuple(initial_noise.shape) != tuple(shape):
            raise ValueError(f"initial_noise has shape {tuple(initial_noise.shape)}; expected {tuple(shape)}")
        return initial_noise.to(device=device, dtype=dtype)
    # drawn on the CPU: the same seed gives the same start on every device
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def _scheduler_step(scheduler, sampler: str, output: torch.Tensor, timestep: torch.Tensor, x: torch.Tensor,
                    eta: float, generator):
    channels = x.shape[1]
    if sampler == "ddpm":  # DDPMScheduler splits a 2C learned-range output itself
        return scheduler.step(output, timestep, x, generator=generator)
    if sampler == "ddim":
        return scheduler.step(output[:, :channels], timestep, x, eta=eta, generator=generator)
    return scheduler.step(output[:, :channels], timestep, x)


@torch.no_grad()
def sample(denoise: Denoiser, shape, betas: torch.Tensor, *, sampler: Sampler = "ddim", steps: int = 20,
           prediction_type: PredictionType = "epsilon", learned_variance: bool = False,
           generator: torch.Generator | None = None, device: torch.device | str = "cpu",
           dtype: torch.dtype = torch.float32, clip_range: float | None = None, eta: float = 0.0,
           callback: StepCallback | None = None, initial_noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw x0 [shape] by running `steps` scheduler steps from x_T ~ N(0, I) (or `initial_noise`).

    `generator` (a CPU generator) seeds the start and every noise draw (DDPM, DDIM with eta > 0), so a seed
    gives the same sample. After each step `callback(step_index, total_steps, timestep, pred_x0)` receives the
    current x0 estimate; returning False raises Cancelled. eta is DDIM's η (0 = deterministic).
    """
    diffusion = GaussianDiffusion(betas)
    _check_request(sampler, steps, diffusion.num_timesteps, eta)
    scheduler = make_scheduler(sampler, diffusion.betas, prediction_type, learned_variance, clip_range)
    timesteps = sampling_timesteps(diffusion.num_timesteps, steps)
    _set_timesteps(scheduler, sampler, timesteps)
    x = _initial_noise(shape, generator, device, dtype, initial_noise)
    for index, timestep in enumerate(scheduler.timesteps):
        t = torch.full((x.shape[0],), int(timestep), dtype=torch.long, device=x.device)
        output = denoise(x, t)
        GaussianDiffusion.split_output(output, x.shape[1], learned_variance)  # shape check with a clear message
        result = _scheduler_step(scheduler, sampler, output, timestep, x, eta, generator)
        if callback is not None:
            pred_x0 = _current_x0(result, diffusion, output, x, t, prediction_type, clip_range)
            if callback(index, len(timesteps), int(timestep), pred_x0) is False:
                raise Cancelled(f"sampling cancelled after step {index + 1} of {len(timesteps)}")
        x = result.prev_sample
    return x


def _current_x0(result, diffusion: GaussianDiffusion, output, x, t, prediction_type, clip_range) -> torch.Tensor:
    """The scheduler's x0 estimate when it reports one (DDPM, DDIM), else computed the same way (DPM-Solver++)."""
    pred_x0 = getattr(result, "pred_original_sample", None)
    if pred_x0 is None:
        pred_x0 = diffusion.predict_x0(output[:, :x.shape[1]], x, t, prediction_type)
        if clip_range is not None:
            pred_x0 = pred_x0.clamp(-clip_range, clip_range)
    return pred_x0


def guided(cond_out: torch.Tensor, uncond_out: torch.Tensor, scale: float, channels: int) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale·(cond − uncond) on the first `channels`
    channels, the conditional model's variance channels kept as they are (GLIDE). Written as
    cond + (scale−1)·(cond − uncond) so that scale = 1 returns the conditional output exactly."""
    cond, uncond = cond_out[:, :channels], uncond_out[:, :channels]
    mixed = cond + (scale - 1.0) * (cond - uncond)
    return torch.cat([mixed, cond_out[:, channels:]], 1)
