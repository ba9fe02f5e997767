"""engine.diffusion.schedules: endpoints, monotonicity, betas that telescope back to ᾱ, golden values, validation."""
from __future__ import annotations

import math

import pytest
import torch

from engine.config import ConfigError
from engine.diffusion.schedules import SCHEDULE_NAMES, ScheduleConfig, alpha_bar, betas, describe, log_snr

GRID = torch.linspace(0.0, 1.0, 1000, dtype=torch.float64)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_alpha_bar_starts_at_one(name):
    assert abs(float(alpha_bar(0.0, ScheduleConfig(name=name))) - 1.0) < 1e-9


@pytest.mark.parametrize("name", ["cosine_light", "cosine", "sigmoid"])
def test_alpha_bar_reaches_zero(name):
    assert abs(float(alpha_bar(1.0, ScheduleConfig(name=name)))) < 1e-6


def test_linear_end_matches_ddpm_integral():
    # ∫₀¹ β(s) ds with β from 0.1 to 20: 0.1 + 19.9 / 2 = 10.05
    assert float(alpha_bar(1.0, ScheduleConfig(name="linear"))) == pytest.approx(math.exp(-10.05), rel=1e-12)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_alpha_bar_and_log_snr_strictly_decrease(name):
    config = ScheduleConfig(name=name)
    ab, snr = alpha_bar(GRID, config), log_snr(GRID, config)
    assert ab.dtype == torch.float64
    assert bool((ab[1:] < ab[:-1]).all())
    assert bool((snr[1:] < snr[:-1]).all())
    assert bool(torch.isfinite(snr).all())


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_betas_range_and_telescoping(name):
    config = ScheduleConfig(name=name, timesteps=200)
    b = betas(config)
    assert b.shape == (200,) and b.dtype == torch.float64
    assert bool((b > 0).all() and (b <= 0.999).all())
    # ∏_{j<i}(1 − β_j) = ᾱ(i/T) wherever the 0.999 clip did not act (interior points)
    cumulative = torch.cumprod(1 - b, 0)[:-2]
    expected = alpha_bar(torch.arange(1, 199, dtype=torch.float64) / 200, config)
    torch.testing.assert_close(cumulative, expected, rtol=1e-6, atol=0)


def test_cosine_light_golden_value():
    expected = math.cos(0.6 * math.pi / 2) ** 6 / math.cos(0.1 * math.pi) ** 6
    assert float(alpha_bar(0.5, ScheduleConfig(name="cosine_light"))) == pytest.approx(expected, rel=1e-12)


def test_sigmoid_golden_value():
    # v(t) = sigmoid(30t), ᾱ = (v(1) − v(t)) / (v(1) − v(0))
    def v(x):
        return 1 / (1 + math.exp(-x))

    expected = (v(30) - v(6)) / (v(30) - v(0))
    assert float(alpha_bar(0.2, ScheduleConfig(name="sigmoid"))) == pytest.approx(expected, rel=1e-9)


def test_sigmoid_is_the_stronger_schedule():
    assert float(log_snr(0.5, ScheduleConfig(name="sigmoid"))) < float(log_snr(0.5, ScheduleConfig(name="cosine")))
    assert float(log_snr(0.5, ScheduleConfig(name="sigmoid"))) < -10


def test_explicit_defaults_equal_implicit_ones():
    implicit = betas(ScheduleConfig(name="cosine_light", timesteps=50))
    explicit = betas(ScheduleConfig(name="cosine_light", start=0.2, end=1.0, tau=3.0, timesteps=50))
    assert torch.equal(implicit, explicit)


@pytest.mark.parametrize("changes, field", [
    ({"name": "quadratic"}, "name"),
    ({"timesteps": 1}, "timesteps"),
    ({"name": "sigmoid", "start": 3.0, "end": 0.0}, "start"),
    ({"name": "sigmoid", "tau": 0.0}, "tau"),
    ({"name": "cosine_light", "end": 1.5}, "end"),
    ({"name": "cosine", "tau": 1.0}, "tau"),
    ({"name": "linear", "tau": 1.0}, "tau"),
])
def test_validation_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        ScheduleConfig(**changes)


def test_presets_and_round_trip(tmp_path):
    config = ScheduleConfig.preset("upsampler", timesteps=500)
    assert config.name == "sigmoid"
    config.save(tmp_path / "schedule.json")
    assert ScheduleConfig.load(tmp_path / "schedule.json") == config


def test_describe_is_short_and_distinct():
    labels = {describe(ScheduleConfig(name=name)) for name in SCHEDULE_NAMES}
    assert len(labels) == 4 and all(len(label) < 40 for label in labels)
    assert "τ=3" in describe(ScheduleConfig())
