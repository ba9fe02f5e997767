"""Discrete Gaussian diffusion (DDPM, Ho et al. 2020; improved DDPM, Nichol & Dhariwal 2021): forward noising,
the true posterior, the model's reverse step, and the training objective (MSE + λ·VLB "hybrid" loss).

Shapes: x is [B, C, ...] (any number of trailing dims: a triplane is passed as [B, 3C, H, W] or rolled out,
so channel dim 1 is what "C" means here); t is a LongTensor [B] in {0 … T−1}. A model with learned variance
outputs [B, 2C, ...]: the first C channels are the prediction, the last C the variance interpolation v ∈ [−1, 1].
Schedule arrays stay float64 on the CPU; coefficients are gathered per timestep and cast to x's dtype/device.
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

from engine.diffusion.schedules import ScheduleConfig
from engine.diffusion.schedules import betas as schedule_betas

PredictionType = Literal["epsilon", "sample"]
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample")
_LOG_2PI = math.log(2 * math.pi)


class Posterior(NamedTuple):
    """q(x_{t−1} | x_t, x_0) (Eq. 6–7, DDPM); log_variance_clipped replaces log 0 at t = 0 by the t = 1 value."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance_clipped: torch.Tensor


def mean_over_nonbatch(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] → [B]."""
    return x.flatten(1).mean(1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """Elementwise KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_nll(x, mean, logvar) -> torch.Tensor:
    """Elementwise −log N(x; mean, e^logvar) in nats (continuous data: no discretisation bins)."""
    return 0.5 * (_LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {list(PREDICTION_TYPES)} (got {prediction_type!r})")


class GaussianDiffusion:
    """The T-step Gaussian diffusion defined by `betas` [T] (float64 internally)."""

    def __init__(self, betas: torch.Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.dim() != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a 1-D tensor [T] (got shape {tuple(betas.shape)})")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1]")
        self.betas = betas
        self.num_timesteps = len(betas)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self._init_posterior()

    @classmethod
    def from_schedule(cls, config: ScheduleConfig) -> GaussianDiffusion:
        return cls(schedule_betas(config))

    def _init_posterior(self) -> None:
        b, ab, ab_prev = self.betas, self.alphas_cumprod, self.alphas_cumprod_prev
        self.posterior_variance = b * (1.0 - ab_prev) / (1.0 - ab)
        # β̃_0 = 0: its log is replaced by log β̃_1 (improved DDPM) so learned-range interpolation stays finite
        first = self.posterior_variance[1:2] if self.num_timesteps > 1 else b[:1]
        self.posterior_log_variance_clipped = torch.log(torch.cat([first, self.posterior_variance[1:]]))
        self.posterior_mean_coef_x0 = b * ab_prev.sqrt() / (1.0 - ab)
        self.posterior_mean_coef_xt = (1.0 - ab_prev) * (1.0 - b).sqrt() / (1.0 - ab)

    # ----- helpers ---------------------------------------------------------------------------------------------
    def _at(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] as [B, 1, 1, ...] in like's dtype/device (gathered in float64 on the CPU, then cast)."""
        t = torch.as_tensor(t).detach().cpu().long()
        if t.dim() != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"t must be a LongTensor [B] with B = {like.shape[0]} (got shape {tuple(t.shape)})")
        if bool((t < 0).any() or (t >= self.num_timesteps).any()):
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps - 1}]")
        values = table[t].to(device=like.device, dtype=like.dtype)
        return values.reshape(-1, *([1] * (like.dim() - 1)))

    @staticmethod
    def split_output(model_output: torch.Tensor, channels: int, learned_variance: bool):
        """[B, C or 2C, ...] → (prediction [B, C, ...], v [B, C, ...] or None)."""
        expected = 2 * channels if learned_variance else channels
        if model_output.shape[1] != expected:
            raise ValueError(f"model output has {model_output.shape[1]} channels; expected {expected} "
                             f"({'2C, learned variance' if learned_variance else 'C'}, C = {channels})")
        if not learned_variance:
            return model_output, None
        return model_output[:, :channels], model_output[:, channels:]

    # ----- forward process ------------------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε (Eq. 4, DDPM)."""
        ab = self.alphas_cumprod
        return self._at(ab.sqrt(), t, x0) * x0 + self._at((1 - ab).sqrt(), t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> Posterior:
        """q(x_{t−1} | x_t, x0): mean μ̃_t, variance β̃_t and its clipped log (Eq. 6–7, DDPM)."""
        mean = self._at(self.posterior_mean_coef_x0, t, xt) * x0 + self._at(self.posterior_mean_coef_xt, t, xt) * xt
        variance = self._at(self.posterior_variance, t, xt).expand_as(xt)
        log_variance = self._at(self.posterior_log_variance_clipped, t, xt).expand_as(xt)
        return Posterior(mean, variance, log_variance)

    # ----- what the network predicts --------------------------------------------------------------------------
    def predict_x0(self, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                   prediction_type: PredictionType) -> torch.Tensor:
        """x0 from a prediction [B, C, ...]: (x_t − √(1−ᾱ)ε)/√ᾱ for epsilon (Eq. 15, DDPM); sample: as is."""
        check_prediction_type(prediction_type)
        if prediction_type == "sample":
            return model_output
        ab = self.alphas_cumprod
        return self._at((1.0 / ab).sqrt(), t, xt) * xt - self._at((1.0 / ab - 1.0).sqrt(), t, xt) * model_output

    def predict_eps(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε = (x_t − √ᾱ x0)/√(1−ᾱ): the noise that takes x0 to x_t."""
        ab = self.alphas_cumprod
        return (self._at((1.0 / ab).sqrt(), t, xt) * xt - x0) / self._at((1.0 / ab - 1.0).sqrt(), t, xt)

    def learned_log_variance(self, v: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log σ² = frac·log β_t + (1−frac)·log β̃_t with frac = (v+1)/2 (Eq. 15, improved DDPM)."""
        frac = (v + 1) / 2
        max_log = self._at(self.betas.log(), t, xt)
        min_log = self._at(self.posterior_log_variance_clipped, t, xt)
        return frac * max_log + (1 - frac) * min_log

    def p_mean_variance(self, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                        prediction_type: PredictionType, learned_variance: bool,
                        clip_range: float | None = None) -> dict[str, torch.Tensor]:
        """The model's reverse step p(x_{t−1} | x_t) = N(mean, e^log_variance).

        mean = μ̃_t(pred_x0, x_t) with pred_x0 clamped to ±clip_range when given. Without learned variance the
        variance is the posterior variance β̃_t (DDPM's "fixed small", log clipped at t = 0; there is no
        "fixed large" β_t option). Returns dict(mean, log_variance, pred_x0), each [B, C, ...].
        """
        prediction, v = self.split_output(model_output, xt.shape[1], learned_variance)
        pred_x0 = self.predict_x0(prediction, xt, t, prediction_type)
        if clip_range is not None:
            pred_x0 = pred_x0.clamp(-clip_range, clip_range)
        mean = self.q_posterior(pred_x0, xt, t).mean
        if v is None:
            log_variance = self._at(self.posterior_log_variance_clipped, t, xt).expand_as(xt)
        else:
            log_variance = self.learned_log_variance(v, xt, t)
        return {"mean": mean, "log_variance": log_variance, "pred_x0": pred_x0}

    # ----- objectives -----------------------------------------------------------------------------------------
    def vlb_terms(self, model_output: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                  prediction_type: PredictionType) -> torch.Tensor:
        """Per-sample variational bound term L_t [B], nats per dimension (Eq. 5, DDPM).

        t > 0: KL(q(x_{t−1}|x_t,x0) ‖ p(x_{t−1}|x_t)); t = 0: −log p(x0|x1) as a plain Gaussian (triplanes are
        continuous, so no discretised image likelihood). The mean comes from a detached prediction: this term
        trains only the variance channels (improved DDPM's L_hybrid). Learned variance is inferred from the
        output having 2C channels.
        """
        channels = x0.shape[1]
        learned = model_output.shape[1] == 2 * channels
        prediction, v = self.split_output(model_output, channels, learned)
        frozen = prediction.detach() if v is None else torch.cat([prediction.detach(), v], 1)
        model = self.p_mean_variance(frozen, xt, t, prediction_type, learned)
        true = self.q_posterior(x0, xt, t)
        kl = mean_over_nonbatch(normal_kl(true.mean, true.log_variance_clipped, model["mean"], model["log_variance"]))
        nll = mean_over_nonbatch(gaussian_nll(x0, model["mean"], model["log_variance"]))
        return torch.where(t.to(kl.device) == 0, nll, kl)

    def training_losses(self, model_output: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                        noise: torch.Tensor, prediction_type: PredictionType, learned_variance: bool,
                        vlb_weight: float = 1e-3) -> dict[str, torch.Tensor]:
        """L = MSE(prediction, target) + vlb_weight · T · L_t  (L_hybrid, Sec. 3.1 improved DDPM), each [B].

        The target is the noise for epsilon and x0 for sample. The single-timestep term L_t is scaled by T so
        that λ = vlb_weight weighs the whole bound L_vlb = Σ_t L_t, as improved DDPM does (its λ = 1e-3 was tuned
        in bits; ours are nats, a factor ln 2 apart). Returned `vlb` is the unscaled L_t (zeros without learned
        variance: the VLB would then train nothing).
        """
        check_prediction_type(prediction_type)
        prediction, _ = self.split_output(model_output, x0.shape[1], learned_variance)
        target = noise if prediction_type == "epsilon" else x0
        mse = mean_over_nonbatch((prediction - target) ** 2)
        if learned_variance:
            vlb = self.vlb_terms(model_output, x0, xt, t, prediction_type)
        else:
            vlb = torch.zeros_like(mse)
        return {"loss": mse + vlb_weight * self.num_timesteps * vlb, "mse": mse, "vlb": vlb}

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform t ~ U{0 … T−1}, LongTensor [batch]; drawn on the CPU so a seed gives the same t on any device."""
        return torch.randint(0, self.num_timesteps, (batch,), generator=generator).to(device)
