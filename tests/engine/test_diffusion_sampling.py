"""engine.diffusion.sampling: seeded determinism, oracle denoisers recover x0 with every sampler, trailing
timesteps, callbacks and cancellation, learned-variance outputs, guidance, input errors; `rodinhd plot`."""
from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from engine.diffusion.gaussian import GaussianDiffusion
from engine.diffusion.sampling import SAMPLERS, guided, make_scheduler, sample, sampling_timesteps
from engine.diffusion.schedules import SCHEDULE_NAMES, ScheduleConfig, betas
from engine.errors import Cancelled, UserError

T = 100
BETAS = betas(ScheduleConfig(timesteps=T))
DIFFUSION = GaussianDiffusion(BETAS)
SHAPE = (2, 3, 4, 4)
X0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(7)) * 2 - 1


def oracle(prediction_type: str, learned: bool = False, seen: list | None = None):
    """A denoiser that knows the answer: the ε taking X0 to x_t (or X0 itself), plus v = 0 variance channels."""
    def denoise(x, t):
        if seen is not None:
            seen.append(t.clone())
        out = DIFFUSION.predict_eps(X0, x, t) if prediction_type == "epsilon" else X0.clone()
        return torch.cat([out, torch.zeros_like(out)], 1) if learned else out
    return denoise


def run(sampler, seed=0, **kwargs):
    kwargs = {"steps": 10, "prediction_type": "epsilon", **kwargs}
    denoise = oracle(kwargs["prediction_type"], kwargs.get("learned_variance", False))
    return sample(denoise, SHAPE, BETAS, sampler=sampler, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_seed_determines_the_sample(sampler):
    # a denoiser that ignores x0 so the result depends on the noise: ε = 0.5·x_t
    def denoise(x, t):
        return 0.5 * x

    def draw(seed):
        return sample(denoise, SHAPE, BETAS, sampler=sampler, steps=5, eta=1.0,
                      generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1), draw(1))
    assert not torch.allclose(draw(1), draw(2))


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_oracle_denoiser_recovers_x0(sampler, prediction_type):
    out = run(sampler, prediction_type=prediction_type)
    assert out.shape == SHAPE and out.dtype == torch.float32
    torch.testing.assert_close(out, X0, rtol=0, atol=1e-4)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_learned_variance_output_works(sampler):
    out = run(sampler, learned_variance=True)
    torch.testing.assert_close(out, X0, rtol=0, atol=1e-3)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_few_steps_start_from_pure_noise(sampler):
    seen: list[torch.Tensor] = []
    sample(oracle("epsilon", seen=seen), SHAPE, BETAS, sampler=sampler, steps=10)
    first = [int(t[0]) for t in seen]
    assert len(first) == 10 and first[0] >= 0.9 * T and first == sorted(first, reverse=True)
    assert all(t.dtype == torch.long and t.shape == (SHAPE[0],) for t in seen)


@pytest.mark.parametrize("steps", [1, 3, 7, 10, 15, 33, 51, T])
def test_sampling_timesteps_trailing(steps):
    ts = sampling_timesteps(T, steps)
    assert len(ts) == steps and int(ts[0]) == T - 1
    assert bool((ts[1:] < ts[:-1]).all())
    assert int(ts[-1]) - T // steps == -1  # DDIM's fixed stride reaches ᾱ = 1 at the last step


def test_ddim_with_steps_not_dividing_t_still_ends_clean():
    # diffusers' own trailing spacing ends DDIM at t = 0 here (T/15 rounds up), leaving noise on the sample
    torch.testing.assert_close(run("ddim", steps=15), X0, rtol=0, atol=1e-4)


def test_ddim_scheduler_first_timestep_near_t():
    scheduler = make_scheduler("ddim", BETAS)
    scheduler.set_timesteps(10)
    assert int(scheduler.timesteps[0]) >= 0.9 * T


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_callback_sees_every_step_and_can_cancel(sampler):
    calls = []

    def record(index, total, timestep, pred_x0):
        calls.append((index, total, timestep))
        assert pred_x0.shape == SHAPE
        return None

    run(sampler, steps=6, callback=record)
    assert [c[0] for c in calls] == list(range(6)) and {c[1] for c in calls} == {6}
    assert calls[0][2] == T - 1

    def stop_after_two(index, total, timestep, pred_x0):
        return index < 1

    with pytest.raises(Cancelled):
        run(sampler, steps=6, callback=stop_after_two)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_callback_pred_x0_is_the_x0_estimate(sampler):
    estimates = []
    run(sampler, steps=4, callback=lambda i, n, t, x0: estimates.append(x0))
    # at t = T−1 (ᾱ ≈ 1e-17) an ε-model's x0 is float32 noise; once the signal is back the oracle's x0 shows
    for estimate in estimates[-2:]:
        torch.testing.assert_close(estimate, X0, rtol=0, atol=1e-3)


def test_clip_range_bounds_the_estimates():
    estimates = []
    scaled = 3 * X0

    def denoise(x, t):
        return scaled.clone()

    sample(denoise, SHAPE, BETAS, sampler="ddim", steps=3, prediction_type="sample", clip_range=1.0,
           callback=lambda i, n, t, x0: estimates.append(x0))
    assert all(e.abs().max() <= 1.0 for e in estimates)


def test_initial_noise_and_dtype():
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sample(lambda x, t: 0.5 * x, SHAPE, BETAS, sampler="ddim", steps=3, dtype=torch.float64,
                 initial_noise=noise)
    again = sample(lambda x, t: 0.5 * x, SHAPE, BETAS, sampler="ddim", steps=3, dtype=torch.float64,
                   initial_noise=noise)
    assert out.dtype == torch.float64 and torch.equal(out, again)


def test_guidance_scale_one_is_the_conditional_output():
    cond = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(1))
    uncond = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(guided(cond, uncond, 1.0, channels=3), cond)
    strong = guided(cond, uncond, 4.0, channels=3)
    torch.testing.assert_close(strong[:, :3], uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]))
    assert torch.equal(strong[:, 3:], cond[:, 3:])  # the conditional variance channels are kept


@pytest.mark.parametrize("kwargs, message", [
    ({"sampler": "euler"}, "sampler"),
    ({"steps": 0}, "between 1 and 100"),
    ({"steps": T + 1}, "between 1 and 100"),
    ({"clip_range": 0.0}, "clip_range"),
    ({"eta": -0.1}, "eta must be between 0 and 1"),
    ({"eta": 1.5}, "eta must be between 0 and 1"),
])
def test_bad_requests_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        sample(oracle("epsilon"), SHAPE, BETAS, **kwargs)


def test_wrong_output_channels_are_reported():
    with pytest.raises(ValueError, match="channels"):
        sample(oracle("epsilon", learned=True), SHAPE, BETAS, learned_variance=False, steps=2)


def test_plot_schedules_writes_a_png(tmp_path, capsys):
    from training.cli.main import main

    out = tmp_path / "plots" / "schedules.png"
    assert main(["plot", "schedules", "--out", str(out), "--timesteps", "200"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in capsys.readouterr().out
    assert main(["plot", "schedules", "--out", str(tmp_path / "x.png"), "--timesteps", "1"]) == 2


# ------------------------------------------------------------------------------- numerical safety at the ends
def zero_terminal_snr_betas(alpha_bar_before_last: float, steps: int = 4) -> torch.Tensor:
    """Betas whose ᾱ falls evenly to `alpha_bar_before_last` and then to exactly 0 (β_T = 1). With η = 1 the first
    DDIM step's 1 − ᾱ_prev − σ² is then exactly 0, computed as (1 − ᾱ_prev) − (√(1 − ᾱ_prev))²: in float32 that
    is below zero for a good share of ᾱ_prev values on any IEEE CPU (correctly rounded sqrt and square)."""
    alpha_bar = torch.linspace(1.0, alpha_bar_before_last, steps, dtype=torch.float64)[1:]
    alpha_bar = torch.cat([alpha_bar, torch.zeros(1, dtype=torch.float64)])
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return 1.0 - alpha_bar / previous


def test_ddim_at_eta_one_is_finite_exactly_on_the_rounding_edge():
    x0 = X0[:1]
    for alpha_bar in torch.linspace(0.05, 0.95, 60).tolist():
        out = sample(lambda x, t: x0, x0.shape, zero_terminal_snr_betas(alpha_bar), sampler="ddim", steps=4,
                     eta=1.0, prediction_type="sample", generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out).all(), f"NaN/inf with ᾱ_prev = {alpha_bar}"
        torch.testing.assert_close(out, x0, rtol=0, atol=1e-5)  # an oracle's last step lands on x0


def _noise_predictor(prediction_type: str):
    x0 = X0.clone()
    return (lambda x, t: 0.5 * x) if prediction_type == "epsilon" else (lambda x, t: x0)


@pytest.mark.parametrize("timesteps", [50, 1000])
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
def test_every_sampler_is_finite_across_schedules_steps_and_eta(schedule, timesteps):
    schedule_betas = betas(ScheduleConfig(name=schedule, timesteps=timesteps))
    step_counts = (1, 2, 3, 5, 7, 10, 33, timesteps if timesteps <= 100 else 100)
    failures = []
    for sampler in SAMPLERS:
        for eta in ((0.0, 0.5, 1.0) if sampler == "ddim" else (0.0,)):
            for steps in step_counts:
                for prediction_type in ("epsilon", "sample"):
                    out = sample(_noise_predictor(prediction_type), SHAPE, schedule_betas, sampler=sampler,
                                 steps=steps, eta=eta, prediction_type=prediction_type,
                                 generator=torch.Generator().manual_seed(steps))
                    if not torch.isfinite(out).all():
                        failures.append((sampler, eta, steps, prediction_type))
    assert failures == []


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_float64_ddim_matches_diffusers_where_float32_is_exact_enough(eta):
    def with_scheduler(scheduler):
        scheduler.set_timesteps(10)
        scheduler.timesteps = sampling_timesteps(T, 10)
        generator, x = torch.Generator().manual_seed(3), torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
        for timestep in scheduler.timesteps:
            t = torch.full((SHAPE[0],), int(timestep), dtype=torch.long)
            x = scheduler.step(oracle("epsilon")(x, t), timestep, x, eta=eta, generator=generator).prev_sample
        return x

    ours = with_scheduler(make_scheduler("ddim", BETAS))
    theirs = with_scheduler(DDIMScheduler(num_train_timesteps=T, trained_betas=BETAS.float().tolist(),
                                          timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False))
    assert type(make_scheduler("ddim", BETAS)) is not DDIMScheduler
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
