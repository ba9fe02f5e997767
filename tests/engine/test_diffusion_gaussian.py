"""engine.diffusion.gaussian: forward statistics, the closed-form posterior, x0/ε inversions, learned-range
variance, the VLB against torch.distributions, and which parameters the VLB trains."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from engine.diffusion.gaussian import GaussianDiffusion
from engine.diffusion.schedules import ScheduleConfig, betas

T = 50


@pytest.fixture(scope="module")
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(betas(ScheduleConfig(timesteps=T)))


def seeded(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def column(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    return values[t].reshape(-1, *([1] * (ndim - 1)))


def test_q_sample_statistics(diffusion):
    n, t_value = 20000, 20
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    t = torch.full((n,), t_value, dtype=torch.long)
    xt = diffusion.q_sample(x0, t, seeded(n, 1))
    ab = float(diffusion.alphas_cumprod[t_value])
    mean_error = 3 * (1 - ab) ** 0.5 / n**0.5
    var_error = 3 * (1 - ab) * (2 / (n - 1)) ** 0.5
    assert abs(xt.mean().item() - ab**0.5 * 0.7) < mean_error
    assert abs(xt.var().item() - (1 - ab)) < var_error


def test_q_posterior_closed_form(diffusion):
    x0, xt = seeded(4, 3, 5, seed=1), seeded(4, 3, 5, seed=2)
    t = torch.tensor([0, 1, 17, T - 1])
    b, ab = diffusion.betas, diffusion.alphas_cumprod
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    coef_x0 = column(b * ab_prev.sqrt() / (1 - ab), t, 3)
    coef_xt = column((1 - b).sqrt() * (1 - ab_prev) / (1 - ab), t, 3)
    variance = column(b * (1 - ab_prev) / (1 - ab), t, 3)
    post = diffusion.q_posterior(x0, xt, t)
    torch.testing.assert_close(post.mean, coef_x0 * x0 + coef_xt * xt)
    torch.testing.assert_close(post.variance, variance.expand_as(xt))
    assert post.variance[0].abs().max() == 0  # β̃_0 = 0 …
    log_beta_tilde_1 = torch.log(b[1] * (1 - ab[0]) / (1 - ab[1]))
    torch.testing.assert_close(post.log_variance_clipped[0], log_beta_tilde_1.expand(3, 5))  # … log clipped to t = 1


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_predict_x0_inverts_q_sample(diffusion, prediction_type):
    x0, noise = seeded(3, 2, 4, seed=3), seeded(3, 2, 4, seed=4)
    t = torch.tensor([0, 25, T - 1])
    xt = diffusion.q_sample(x0, t, noise)
    output = noise if prediction_type == "epsilon" else x0
    torch.testing.assert_close(diffusion.predict_x0(output, xt, t, prediction_type), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(diffusion.predict_eps(x0, xt, t), noise, rtol=1e-9, atol=1e-9)


def test_outputs_follow_input_dtype(diffusion):
    x0 = seeded(2, 3, 4, dtype=torch.float32)
    t = torch.tensor([3, 9])
    assert diffusion.q_sample(x0, t, torch.zeros_like(x0)).dtype == torch.float32
    assert diffusion.q_posterior(x0, x0, t).mean.dtype == torch.float32


def test_learned_range_endpoints(diffusion):
    xt, t = seeded(2, 3, 4), torch.tensor([0, 30])
    prediction = seeded(2, 3, 4, seed=5)
    for v, expected in ((1.0, diffusion.betas.log()), (-1.0, diffusion.posterior_log_variance_clipped)):
        output = torch.cat([prediction, torch.full_like(prediction, v)], 1)
        out = diffusion.p_mean_variance(output, xt, t, "epsilon", learned_variance=True)
        torch.testing.assert_close(out["log_variance"], column(expected, t, 3).expand_as(xt))


def test_fixed_variance_is_the_posterior_variance(diffusion):
    xt, t = seeded(2, 3, 4), torch.tensor([5, 30])
    out = diffusion.p_mean_variance(seeded(2, 3, 4, seed=6), xt, t, "epsilon", learned_variance=False)
    expected = column(diffusion.posterior_log_variance_clipped, t, 3).expand_as(xt)
    torch.testing.assert_close(out["log_variance"], expected)


def test_clip_range_clamps_pred_x0(diffusion):
    xt, t = 10 * seeded(2, 3, 4), torch.tensor([40, 45])
    out = diffusion.p_mean_variance(seeded(2, 3, 4, seed=7), xt, t, "epsilon", False, clip_range=1.0)
    assert out["pred_x0"].abs().max() <= 1.0


def _model_normal(diffusion, output, xt, t):
    """p(x_{t−1}|x_t) built by hand: x0 from ε, the posterior-mean formula, learned-range variance."""
    eps, v = output[:, :2], output[:, 2:]
    ab = column(diffusion.alphas_cumprod, t, 3)
    pred_x0 = (xt - (1 - ab).sqrt() * eps) / ab.sqrt()
    mean = diffusion.q_posterior(pred_x0, xt, t).mean
    frac = (v + 1) / 2
    log_var = frac * column(diffusion.betas.log(), t, 3) + (1 - frac) * column(
        diffusion.posterior_log_variance_clipped, t, 3)
    return Normal(mean, (0.5 * log_var).exp())


def test_vlb_matches_torch_distributions(diffusion):
    x0, noise = seeded(3, 2, 5, seed=8), seeded(3, 2, 5, seed=9)
    t = torch.tensor([0, 12, T - 1])
    xt = diffusion.q_sample(x0, t, noise)
    output = torch.cat([noise + 0.1 * seeded(3, 2, 5, seed=10), torch.tanh(seeded(3, 2, 5, seed=11))], 1)
    terms = diffusion.vlb_terms(output, x0, xt, t, "epsilon")
    model = _model_normal(diffusion, output, xt, t)
    post = diffusion.q_posterior(x0, xt, t)
    true = Normal(post.mean, post.variance.clamp(min=1e-300).sqrt())
    kl = kl_divergence(true, model).flatten(1).mean(1)
    nll = -model.log_prob(x0).flatten(1).mean(1)
    torch.testing.assert_close(terms[1:], kl[1:], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(terms[0], nll[0], rtol=1e-5, atol=1e-8)


def test_vlb_trains_only_the_variance(diffusion):
    x0, noise = seeded(2, 2, 3, seed=12), seeded(2, 2, 3, seed=13)
    t = torch.tensor([0, 20])
    xt = diffusion.q_sample(x0, t, noise)
    output = torch.cat([noise + 0.3, torch.zeros_like(noise)], 1).requires_grad_(True)
    diffusion.vlb_terms(output, x0, xt, t, "epsilon").sum().backward()
    assert output.grad[:, :2].abs().max() == 0
    assert output.grad[:, 2:].abs().max() > 0


@pytest.mark.parametrize("learned", [False, True])
def test_training_losses(diffusion, learned):
    x0, noise = seeded(4, 3, 2, 2, seed=14, dtype=torch.float32), seeded(4, 3, 2, 2, seed=15, dtype=torch.float32)
    t = diffusion.sample_timesteps(4, torch.Generator().manual_seed(0))
    xt = diffusion.q_sample(x0, t, noise)
    output = torch.cat([noise, torch.zeros_like(noise)], 1) if learned else noise + 0.5
    losses = diffusion.training_losses(output, x0, xt, t, noise, "epsilon", learned, vlb_weight=1e-3)
    assert {k: v.shape for k, v in losses.items()} == {k: (4,) for k in ("loss", "mse", "vlb")}
    if learned:  # a perfect ε: MSE 0, the loss is the scaled bound alone
        assert losses["mse"].abs().max() == 0
        torch.testing.assert_close(losses["loss"], 1e-3 * T * losses["vlb"])
    else:
        torch.testing.assert_close(losses["mse"], torch.full((4,), 0.25))
        assert losses["vlb"].abs().max() == 0
        torch.testing.assert_close(losses["loss"], losses["mse"])


def test_sample_target_is_x0(diffusion):
    x0, noise = seeded(2, 3, 4, seed=16), seeded(2, 3, 4, seed=17)
    t = torch.tensor([1, 2])
    losses = diffusion.training_losses(x0, x0, diffusion.q_sample(x0, t, noise), t, noise, "sample", False)
    assert losses["mse"].abs().max() == 0


def test_sample_timesteps_seeded_and_in_range(diffusion):
    a = diffusion.sample_timesteps(1000, torch.Generator().manual_seed(3))
    b = diffusion.sample_timesteps(1000, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.long
    assert a.min() >= 0 and a.max() <= T - 1 and len(a.unique()) == T


def test_bad_inputs_raise(diffusion):
    x = seeded(2, 3, 4)
    with pytest.raises(ValueError, match="channels"):
        diffusion.p_mean_variance(seeded(2, 5, 4), x, torch.tensor([1, 2]), "epsilon", True)
    with pytest.raises(ValueError, match="timesteps"):
        diffusion.q_sample(x, torch.tensor([0, T]), x)
    with pytest.raises(ValueError, match="prediction_type"):
        diffusion.predict_x0(x, x, torch.tensor([1, 2]), "v")
