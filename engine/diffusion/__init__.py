"""engine.diffusion: noise schedules, the Gaussian diffusion objective, and samplers on diffusers' schedulers.

The sampling names load on first use: importing diffusers takes seconds, and schedules alone (plots, configs)
should not pay for it.
"""
from engine.diffusion.gaussian import PREDICTION_TYPES, GaussianDiffusion, Posterior, PredictionType
from engine.diffusion.schedules import SCHEDULE_NAMES, ScheduleConfig, alpha_bar, betas, describe, log_snr

_SAMPLING_NAMES = ("SAMPLERS", "Sampler", "guided", "make_scheduler", "sample", "sampling_timesteps")

__all__ = [
    "PREDICTION_TYPES", "GaussianDiffusion", "Posterior", "PredictionType",
    "SCHEDULE_NAMES", "ScheduleConfig", "alpha_bar", "betas", "describe", "log_snr", *_SAMPLING_NAMES,
]


def __getattr__(name: str):
    if name in _SAMPLING_NAMES:
        from engine.diffusion import sampling

        return getattr(sampling, name)
    raise AttributeError(f"module 'engine.diffusion' has no attribute {name!r}")
