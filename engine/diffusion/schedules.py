"""Continuous-time noise schedules ᾱ(t), t ∈ [0, 1], and the discrete betas a diffusion model trains with.

Four schedules, all with ᾱ(0) = 1 and ᾱ decreasing to (about) 0 at t = 1:
  - linear:       the continuous form of DDPM's linear betas (1e-4 … 0.02 over 1000 steps):
                  ᾱ(t) = exp(−(β₀t + ½(β₁−β₀)t²)), β₀ = start = 0.1, β₁ = end = 20.
  - cosine:       improved DDPM (Nichol & Dhariwal 2021, Eq. 17): ᾱ(t) = f(t)/f(0), f(t) = cos(((t+s)/(1+s))·π/2)²,
                  s = 0.008 (no start/end/tau).
  - cosine_light: Chen 2023 ("On the importance of noise scheduling", Alg. 1) cosine with power 2τ:
                  v(t) = cos((start + (end−start)t)·π/2)^(2τ), ᾱ(t) = (v(end) − v(t)) / (v(end) − v(start));
                  defaults 0.2, 1, 3 give RodinHD's base schedule cos((0.2+0.8t)·π/2)⁶ / cos(0.1π)⁶.
  - sigmoid:      Chen 2023 sigmoid: v(t) = sigmoid((start + (end−start)t)/τ), same normalisation;
                  defaults 0, 3, 0.1 give RodinHD's (much noisier) upsampler schedule.
Everything is float64: the tails of these schedules reach 1e-18, where float32 loses the signal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from engine.config import ConfigError, ConfigMixin

SCHEDULE_NAMES = ("linear", "cosine", "cosine_light", "sigmoid")

# (start, end, tau) used where the config leaves a value None; None here means "this schedule has no such knob"
_DEFAULTS: dict[str, tuple[float | None, float | None, float | None]] = {
    "linear": (0.1, 20.0, None),
    "cosine": (None, None, None),
    "cosine_light": (0.2, 1.0, 3.0),
    "sigmoid": (0.0, 3.0, 0.1),
}
_COSINE_OFFSET = 0.008  # improved DDPM's s: keeps β small near t = 0
_MAX_BETA = 0.999  # improved DDPM clips betas so the last steps stay invertible
_MIN_BETA = 1e-8
_LOG_SNR_CLAMP = (1e-20, 1.0 - 1e-12)  # keeps logSNR finite at t = 0 and t = 1


@dataclass
class ScheduleConfig(ConfigMixin):
    name: str = "cosine_light"
    """Schedule family: linear, cosine, cosine_light or sigmoid."""
    start: float | None = None
    """Start of the schedule's input range (β₀ for linear); None = the schedule's default."""
    end: float | None = None
    """End of the schedule's input range (β₁ for linear); None = the schedule's default."""
    tau: float | None = None
    """Temperature τ (cosine_light: power 2τ, sigmoid: divisor); None = the schedule's default."""
    timesteps: int = 1000
    """Number of discrete training timesteps T."""

    PRESETS: ClassVar[dict] = {
        "base": {"name": "cosine_light"},  # RodinHD base model
        "upsampler": {"name": "sigmoid"},  # RodinHD upsampler
        "improved_ddpm": {"name": "cosine"},
        "ddpm": {"name": "linear"},
    }

    def validate(self) -> None:
        if self.name not in SCHEDULE_NAMES:
            raise ConfigError(f"name must be one of {list(SCHEDULE_NAMES)} (got {self.name!r})")
        if not isinstance(self.timesteps, int) or self.timesteps < 2:
            raise ConfigError(f"timesteps must be a whole number ≥ 2 (got {self.timesteps!r})")
        _reject_unused_knobs(self)
        start, end, tau = resolved_params(self)
        if start is not None and not start < end:
            raise ConfigError(f"start must be < end for {self.name} (got start={start}, end={end})")
        if tau is not None and not tau > 0:
            raise ConfigError(f"tau must be > 0 for {self.name} (got {tau})")
        if self.name == "cosine_light" and not (0.0 <= start and end <= 1.0):
            raise ConfigError(f"start and end must lie in [0, 1] for cosine_light (got start={start}, end={end})")
        if self.name == "linear" and start < 0:
            raise ConfigError(f"start (β₀) must be ≥ 0 for linear (got {start})")


def _reject_unused_knobs(config: ScheduleConfig) -> None:
    """A value the schedule would silently ignore is a mistake: say so instead."""
    for field, default in zip(("start", "end", "tau"), _DEFAULTS[config.name]):
        if default is None and getattr(config, field) is not None:
            raise ConfigError(f"{field} is not used by the {config.name} schedule; leave it unset")


def resolved_params(config: ScheduleConfig) -> tuple[float | None, float | None, float | None]:
    """(start, end, tau) with the schedule's defaults filled in (None where the schedule has no such knob)."""
    defaults = _DEFAULTS[config.name]
    given = (config.start, config.end, config.tau)
    return tuple(float(g) if g is not None else d for g, d in zip(given, defaults))  # type: ignore[return-value]


def _linear(t: torch.Tensor, beta0: float, beta1: float) -> torch.Tensor:
    return torch.exp(-(beta0 * t + 0.5 * (beta1 - beta0) * t**2))


def _cosine(t: torch.Tensor) -> torch.Tensor:
    def f(x):
        return torch.cos((x + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * math.pi / 2) ** 2

    return f(t) / f(torch.zeros((), dtype=torch.float64))


def _cosine_light(t: torch.Tensor, start: float, end: float, tau: float) -> torch.Tensor:
    def v(x):
        return torch.cos(x * math.pi / 2).clamp(min=0.0) ** (2 * tau)

    v_start, v_end = v(torch.tensor(start, dtype=torch.float64)), v(torch.tensor(end, dtype=torch.float64))
    return (v_end - v(start + (end - start) * t)) / (v_end - v_start)


def _sigmoid(t: torch.Tensor, start: float, end: float, tau: float) -> torch.Tensor:
    # v(end) − v(u) written as sigmoid(−u) − sigmoid(−u_end): no cancellation of two numbers near 1 in the tail
    def tail(x):
        return torch.sigmoid(-torch.as_tensor(x, dtype=torch.float64) / tau)

    return (tail(start + (end - start) * t) - tail(end)) / (tail(start) - tail(end))


def alpha_bar(t: torch.Tensor | float, config: ScheduleConfig) -> torch.Tensor:
    """ᾱ(t) for t ∈ [0, 1] (any shape), float64; ᾱ(0) = 1, decreasing in t."""
    t = torch.as_tensor(t, dtype=torch.float64)
    start, end, tau = resolved_params(config)
    if config.name == "linear":
        out = _linear(t, start, end)
    elif config.name == "cosine":
        out = _cosine(t)
    elif config.name == "cosine_light":
        out = _cosine_light(t, start, end, tau)
    else:
        out = _sigmoid(t, start, end, tau)
    return out.clamp(0.0, 1.0)


def log_snr(t: torch.Tensor | float, config: ScheduleConfig) -> torch.Tensor:
    """log(ᾱ/(1−ᾱ)) at t (float64); ᾱ is clamped to [1e-20, 1−1e-12] so the ends stay finite."""
    a = alpha_bar(t, config).clamp(*_LOG_SNR_CLAMP)
    return torch.log(a) - torch.log1p(-a)


def betas(config: ScheduleConfig) -> torch.Tensor:
    """Discrete betas [T] (float64): β_i = 1 − ᾱ((i+1)/T)/ᾱ(i/T), clipped to [1e-8, 0.999] (improved DDPM)."""
    steps = config.timesteps
    ab = alpha_bar(torch.arange(steps + 1, dtype=torch.float64) / steps, config)
    previous, current = ab[:-1], ab[1:]
    ratio = torch.where(previous > 0, current / previous.clamp(min=1e-300), torch.zeros_like(current))
    return (1.0 - ratio).clamp(_MIN_BETA, _MAX_BETA)


def describe(config: ScheduleConfig) -> str:
    """Short label for plots and logs, e.g. 'cosine_light(0.2→1, τ=3)'."""
    start, end, tau = resolved_params(config)
    if config.name == "cosine":
        return f"cosine (s={_COSINE_OFFSET:g})"
    if config.name == "linear":
        return f"linear (β {start:g}→{end:g})"
    return f"{config.name}({start:g}→{end:g}, τ={tau:g})"
