"""engine.decoder: the shared MLP (shapes, ranges, view dependence), trunc_exp, the content hash and the
config.json + safetensors folder."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from engine.config import ConfigError
from engine.decoder import (
    CONFIG_FILE, WEIGHTS_FILE, DecoderConfig, TriplaneDecoder, decoder_hash, frequency_encode, load_decoder,
    save_decoder, trunc_exp,
)
from engine.errors import UserError

TINY = dict(channels=8, hidden=16, geo_features=8)


def tiny_decoder(seed: int = 0, **changes) -> TriplaneDecoder:
    torch.manual_seed(seed)
    return TriplaneDecoder(DecoderConfig(**{**TINY, **changes}))


def inputs(n: int = 32, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(n, dim, generator=g) * 2 - 1
    dirs = torch.randn(n, 3, generator=g)
    return feats, dirs / dirs.norm(dim=-1, keepdim=True)


# ---- forward -----------------------------------------------------------------------------------------------
def test_output_shapes_and_ranges():
    dec = tiny_decoder()
    feats, dirs = inputs(32)
    sigma, rgb = dec(feats, dirs)
    assert sigma.shape == (32,) and rgb.shape == (32, 3)
    assert (sigma >= 0).all() and torch.isfinite(sigma).all()
    assert (rgb > 0).all() and (rgb < 1).all()


def test_large_features_keep_sigma_finite_and_rgb_in_range():
    dec = tiny_decoder()
    feats, dirs = inputs(16)
    sigma, rgb = dec(feats * 1e3, dirs)
    assert torch.isfinite(sigma).all() and (sigma >= 0).all()
    assert (rgb >= 0).all() and (rgb <= 1).all()


def test_density_uses_the_last_quarter_of_the_channels_only():
    dec = tiny_decoder()
    feats, dirs = inputs(16)
    other = feats.clone()
    other[:, :6] = torch.rand(16, 6) * 2 - 1  # change the colour channels (first 3C/4)
    s1, _ = dec(feats, dirs)
    s2, _ = dec(other, dirs)
    torch.testing.assert_close(s1, s2, atol=0, rtol=0)
    other[:, 6:] += 0.5  # change the density channels
    s3, _ = dec(other, dirs)
    assert (s3 - s1).abs().max() > 0


def test_density_bias_sets_the_initial_density():
    empty = tiny_decoder(density_bias=-30.0)
    feats, _ = inputs(64)
    with torch.no_grad():
        sigma, _ = empty.density(feats)
    assert float(sigma.max()) < 1e-8


def test_view_dependent_colour_changes_with_direction():
    dec = tiny_decoder()
    feats, dirs = inputs(32)
    _, other_dirs = inputs(32, seed=1)
    s1, c1 = dec(feats, dirs)
    s2, c2 = dec(feats, other_dirs)
    torch.testing.assert_close(s1, s2, atol=0, rtol=0)  # density never depends on the view
    assert (c1 - c2).abs().max() > 1e-4
    with pytest.raises(ValueError, match="view-dependent"):
        dec(feats)


def test_view_independent_colour_ignores_direction():
    dec = tiny_decoder(view_dependent=False)
    feats, dirs = inputs(32)
    _, other_dirs = inputs(32, seed=1)
    _, c1 = dec(feats, dirs)
    _, c2 = dec(feats, other_dirs)
    _, c3 = dec(feats)
    torch.testing.assert_close(c1, c2, atol=0, rtol=0)
    torch.testing.assert_close(c1, c3, atol=0, rtol=0)


def test_concat_aggregation_takes_three_times_the_channels():
    dec = tiny_decoder(aggregate="concat")
    assert dec.config.feature_dim == 24
    feats, dirs = inputs(8, dim=24)
    sigma, rgb = dec(feats, dirs)
    assert sigma.shape == (8,) and rgb.shape == (8, 3)


def test_frequency_encoding_layout():
    x = torch.tensor([[0.5, -1.0]])
    enc = frequency_encode(x, 2)
    assert enc.shape == (1, 2 * (1 + 2 * 2))
    expected = torch.cat([x, torch.sin(x), torch.cos(x), torch.sin(2 * x), torch.cos(2 * x)], -1)
    torch.testing.assert_close(enc, expected)
    torch.testing.assert_close(frequency_encode(x, 0), x)


# ---- trunc_exp ---------------------------------------------------------------------------------------------
def test_trunc_exp_value_and_clamped_gradient():
    x = torch.tensor([-100.0, 0.0, 1.0, 100.0], requires_grad=True)
    y = trunc_exp(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[:3], torch.exp(x[:3].detach()))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert float(x.grad[3]) == pytest.approx(float(torch.exp(torch.tensor(15.0))), rel=1e-5)  # clamped
    assert float(x.grad[1]) == pytest.approx(1.0)
    assert float(x.grad[2]) == pytest.approx(float(torch.exp(torch.tensor(1.0))), rel=1e-6)
    assert float(x.grad[0]) >= 0 and float(x.grad[0]) < 1e-6


def test_decoder_gradients_are_finite_for_huge_density_logits():
    dec = tiny_decoder(density_bias=100.0)
    feats, dirs = inputs(8)
    sigma, rgb = dec(feats, dirs)
    (sigma.sum() + rgb.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in dec.parameters() if p.grad is not None)


# ---- hash and files ----------------------------------------------------------------------------------------
def test_save_load_round_trip_is_exact(tmp_path):
    dec = tiny_decoder(seed=3)
    digest = save_decoder(tmp_path / "dec", dec)
    assert digest == decoder_hash(dec) and len(digest) == 16
    assert (tmp_path / "dec" / CONFIG_FILE).is_file() and (tmp_path / "dec" / WEIGHTS_FILE).is_file()
    loaded = load_decoder(tmp_path / "dec")
    assert not loaded.training
    assert loaded.config == dec.config
    assert decoder_hash(loaded) == digest
    feats, dirs = inputs(16)
    with torch.no_grad():
        a, b = dec(feats, dirs), loaded(feats, dirs)
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)
    assert json.loads((tmp_path / "dec" / CONFIG_FILE).read_text()) == dec.config.to_dict()


def test_hash_depends_on_weights_and_config_only():
    a, b = tiny_decoder(seed=0), tiny_decoder(seed=0)
    assert decoder_hash(a) == decoder_hash(b)  # same seed, same weights
    assert decoder_hash(tiny_decoder(seed=1)) != decoder_hash(a)
    with torch.no_grad():
        b.colour_net[0].weight[0, 0] += 1e-3
    assert decoder_hash(b) != decoder_hash(a)
    c = tiny_decoder(seed=1)
    c.load_state_dict(a.state_dict())
    assert decoder_hash(c) == decoder_hash(a)
    c.config = DecoderConfig(**{**TINY, "density_bias": -2.0})  # same weights, different config
    assert decoder_hash(c) != decoder_hash(a)


@pytest.mark.parametrize("changes", [
    {"channels": 6}, {"channels": 0}, {"channels": 2}, {"aggregate": "max"}, {"hidden": 0},
    {"geo_features": -1}, {"frequencies": -1},
])
def test_config_validation(changes):
    with pytest.raises(ConfigError):
        DecoderConfig(**{**TINY, **changes})


def test_config_presets_build_decoders():
    for name in ("tiny", "paper"):
        dec = TriplaneDecoder(DecoderConfig.preset(name))
        assert dec.config.channels % 4 == 0


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no decoder"):
        load_decoder(tmp_path)
    save_decoder(tmp_path / "dec", tiny_decoder())
    config = json.loads((tmp_path / "dec" / CONFIG_FILE).read_text())
    config["hidden"] = 32  # weights no longer match
    (tmp_path / "dec" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(UserError, match="do not match"):
        load_decoder(tmp_path / "dec")


# ------------------------------------------------------------------------------------------- colour reach
GAMUT = torch.tensor([[0.93, 0.80, 0.16], [0.16, 0.32, 0.78], [0.45, 0.20, 0.62], [0.95, 0.95, 0.95],
                      [0.05, 0.05, 0.05], [0.10, 0.85, 0.20]])  # yellow, blue, purple, white, black, green


def test_the_colour_skip_path_is_the_colour_when_the_mlp_is_silent():
    torch.manual_seed(0)
    decoder = TriplaneDecoder(DecoderConfig(channels=16, hidden=16, geo_features=8, colour_skip=4.0))
    with torch.no_grad():
        decoder.colour_net[-1].weight.zero_()
    features = torch.rand(32, 16) * 2 - 1
    _, rgb = decoder(features, torch.randn(32, 3))
    torch.testing.assert_close(rgb, torch.sigmoid(4.0 * features[:, :3]), rtol=0, atol=1e-6)


def test_a_frozen_decoder_with_the_skip_path_reaches_the_whole_cube():
    from training.fit.reach import closest_colours

    torch.manual_seed(1)
    decoder = TriplaneDecoder(DecoderConfig(channels=16, hidden=32, geo_features=8, colour_skip=4.0,
                                            colour_bias=True))
    with torch.no_grad():  # an MLP that pulls every colour towards one brownish logit, like a narrow stage 1
        decoder.colour_net[-1].bias.copy_(torch.tensor([0.8, -0.2, -0.9]))
    reached = closest_colours(decoder, GAMUT, starts=16, steps=120)
    assert (reached - GAMUT).abs().max() < 0.03, reached
    assert all(p.requires_grad for p in decoder.parameters())  # the probe froze it only while probing


def test_decoders_made_before_the_skip_path_load_unchanged(tmp_path):
    old = {"channels": 16, "hidden": 16, "geo_features": 8, "frequencies": 2, "view_dependent": True,
           "aggregate": "mean", "density_bias": -1.0}  # a config.json written before colour_skip existed
    config = DecoderConfig.from_dict(old)
    decoder = TriplaneDecoder(config)
    assert config.colour_skip == 0.0 and not config.colour_bias
    assert not any(k.endswith("bias") and k.startswith("colour_net") for k in decoder.state_dict())
    legacy = hashlib.sha256(json.dumps(old, sort_keys=True).encode())  # the hash as computed before the fields
    for name, tensor in sorted(decoder.state_dict().items()):
        legacy.update(name.encode())
        legacy.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    assert decoder_hash(decoder) == legacy.hexdigest()[:16]  # triplanes and models made with it still match
    shipped = load_decoder(Path(__file__).resolve().parents[2] / "assets" / "models" / "default" / "decoder")
    assert shipped.config.colour_skip == 0.0
