"""Triplane U-Net: roll-out, 3D-aware conv axes, conditioning/dropping, batch independence, configs, round trips.

Tiny configs on CPU; most tests run base_tiny at a reduced R = 16 to stay fast.
"""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from engine.config import ConfigError
from engine.diffusion.blocks import Aware3DConv, CrossAttentionBlock, PlaneConv2d, aware_features
from engine.diffusion.rollout import roll_in, roll_out
from engine.diffusion.unet import TriplaneUNet, TriplaneUNetConfig

R = 16  # reduced resolution for the tiny presets (3 levels: divisible by 4)


def portrait(cfg: TriplaneUNetConfig, batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = {key: torch.randn(batch, c, s, s, generator=g)
             for key, c, s in zip(("y1", "y2", "y3"), cfg.portrait_channels, cfg.portrait_sizes)}
    feats["global"] = torch.randn(batch, cfg.portrait_global_dim, generator=g)
    return feats


def triplane(cfg: TriplaneUNetConfig, batch: int, seed: int = 2, channels: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels or cfg.channels, cfg.resolution, 3 * cfg.resolution, generator=g)


def perturbed(net: TriplaneUNet, seed: int = 0, scale: float = 0.05) -> TriplaneUNet:
    """Move every weight off its (partly zero) initialisation, so every path affects the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net.eval()


def build(preset: str, seed: int = 0, **changes) -> TriplaneUNet:
    torch.manual_seed(seed)
    return TriplaneUNet(TriplaneUNetConfig.preset(preset, **changes))


@pytest.fixture(scope="module")
def base() -> TriplaneUNet:
    return perturbed(build("base_tiny", resolution=R))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a training job shares this machine
    yield
    torch.set_num_threads(threads)


# ---- roll-out ---------------------------------------------------------------------------------------------------
def test_roll_out_puts_planes_side_by_side_and_roll_in_inverts_it():
    planes = torch.randn(2, 3, 4, 5, 5)
    rolled = roll_out(planes)
    assert rolled.shape == (2, 4, 5, 15)
    for k in range(3):  # XY, XZ, YZ in that order along the width
        assert torch.equal(rolled[..., 5 * k:5 * (k + 1)], planes[:, k])
    assert torch.equal(roll_in(rolled), planes)
    assert torch.equal(roll_out(roll_in(rolled)), rolled)
    assert torch.equal(roll_in(roll_out(planes[0])), planes[0])  # unbatched [3, C, R, R] ↔ [C, R, 3R]
    assert roll_out(planes[0]).shape == (4, 5, 15)
    with pytest.raises(ValueError):
        roll_in(torch.randn(1, 4, 5, 14))


# ---- 3D-aware convolution ---------------------------------------------------------------------------------------
def test_aware_features_ramps_land_on_the_shared_axis():
    n = 4
    ramp = torch.arange(n, dtype=torch.float32)
    xy = torch.zeros(n, n)
    xz = ramp.expand(n, n).clone()  # XZ: columns are x → a ramp along x, constant in z
    yz = 10 * ramp.expand(n, n).clone()  # YZ: columns are y → a ramp along y
    feats = roll_in(aware_features(roll_out(torch.stack([xy, xz, yz])[None, :, None])))[0]  # [3, 3, n, n]
    on_xy = feats[0]  # XY: rows y, columns x
    assert torch.equal(on_xy[1], ramp.expand(n, n))  # XZ's f(x) varies along XY's columns (x)
    assert torch.equal(on_xy[2], 10 * ramp[:, None].expand(n, n))  # YZ's f(y) varies along XY's rows (y)
    on_yz = feats[2]  # YZ: rows z, columns y
    assert torch.equal(on_yz[2], ramp.mean().expand(n, n))  # XZ averaged over x: constant in z


def test_aware_features_match_an_explicit_3d_definition():
    n, g = 5, torch.Generator().manual_seed(0)
    xy, xz, yz = torch.randn(3, n, n, generator=g)  # xy[y, x], xz[z, x], yz[z, y]
    feats = roll_in(aware_features(roll_out(torch.stack([xy, xz, yz])[None, :, None])))[0]
    expected = torch.zeros(3, 3, n, n)
    for a in range(n):
        for b in range(n):
            y, x = a, b  # XY at (row y, col x)
            expected[0, :, a, b] = torch.stack([xy[y, x], xz[:, x].mean(), yz[:, y].mean()])
            z, x = a, b  # XZ at (row z, col x)
            expected[1, :, a, b] = torch.stack([xz[z, x], xy[:, x].mean(), yz[z, :].mean()])
            z, y = a, b  # YZ at (row z, col y)
            expected[2, :, a, b] = torch.stack([yz[z, y], xy[y, :].mean(), xz[z, :].mean()])
    torch.testing.assert_close(feats, expected)


def test_aware3d_conv_does_not_leak_through_plane_borders():
    torch.manual_seed(0)
    conv, n = Aware3DConv(2, 3), 8
    x = torch.randn(1, 2, n, 3 * n)
    bump = torch.zeros_like(x)
    # a 2×2 checkerboard at XY's right border (x = R−1, next to XZ's left border in the roll-out): every row and
    # column mean of XY is unchanged, so the pooled paths see nothing and XZ/YZ outputs must not move at all
    bump[:, :, 3:5, n - 2:n] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    with torch.no_grad():
        before, after = conv(x), conv(x + bump)
    torch.testing.assert_close(after[..., n:], before[..., n:], rtol=0, atol=1e-6)
    assert (after[..., :n] - before[..., :n]).abs().max() > 1e-3  # XY itself does change
    ramp_in_x = torch.zeros_like(x)  # a non-zero column mean does reach XZ through its f(x) path
    ramp_in_x[:, :, :, :n] = torch.arange(n, dtype=torch.float32)
    with torch.no_grad():
        assert (conv(x + ramp_in_x)[..., n:2 * n] - before[..., n:2 * n]).abs().max() > 1e-3


def test_plane_conv_pads_each_plane_on_its_own():
    torch.manual_seed(0)
    conv, n = PlaneConv2d(1, 1, 3, padding=1), 4
    x = torch.zeros(1, 1, n, 3 * n)
    x[..., n - 1] = 1.0  # XY's last column
    with torch.no_grad():
        assert torch.equal(conv(x)[..., n:], conv(torch.zeros_like(x))[..., n:])


def test_fresh_cross_attention_block_is_the_identity():
    torch.manual_seed(0)
    block, x = CrossAttentionBlock(64, 32, context_dim=8), torch.randn(2, 64, 4, 12)
    with torch.no_grad():
        assert torch.equal(block(x, torch.randn(2, 5, 8)), x)  # zero-initialised output projection


# ---- the U-Net --------------------------------------------------------------------------------------------------
def test_output_shapes_and_fresh_model_predicts_zero():
    net = build("base_tiny")  # full R = 32, learned variance → 2C outputs
    cfg = net.config
    with torch.no_grad():
        out = net(triplane(cfg, 1), torch.tensor([10]), portrait(cfg, 1))
    assert out.shape == (1, 2 * cfg.channels, cfg.resolution, 3 * cfg.resolution)
    assert torch.count_nonzero(out) == 0  # zero-initialised output conv
    up = build("upsample_tiny", resolution=R, plane_padding=False)  # also the authors' across-the-seams convs
    ucfg = up.config
    with torch.no_grad():
        out = up(triplane(ucfg, 2), torch.tensor([3.0, 7.5]), None, lowres=triplane(ucfg, 2, seed=5))
    assert out.shape == (2, ucfg.channels, R, 3 * R)


def test_dropped_sample_equals_unconditional_and_kept_sample_differs(base):
    cfg = base.config
    x, t = triplane(cfg, 2), torch.tensor([5, 500])
    with torch.no_grad():
        cond = base(x, t, portrait(cfg, 2), drop=torch.tensor([False, True]))
        uncond = base(x, t, None)
    torch.testing.assert_close(cond[1], uncond[1], rtol=0, atol=1e-5)
    assert (cond[0] - uncond[0]).abs().max() > 1e-3


def test_samples_in_a_batch_are_independent(base):
    cfg = base.config
    x, t, p = triplane(cfg, 2).double(), torch.tensor([1, 900]), {k: v.double() for k, v in portrait(cfg, 2).items()}
    net = copy.deepcopy(base).double()  # float64: batch-size-dependent kernel blocking stays far below the bound
    with torch.no_grad():
        both = net(x, t, p)
        singles = [net(x[i:i + 1], t[i:i + 1], {k: v[i:i + 1] for k, v in p.items()}) for i in range(2)]
    torch.testing.assert_close(both, torch.cat(singles), rtol=0, atol=1e-10)  # a leak between samples is ~1


@pytest.mark.parametrize("mode", ["encoder_decoder", "middle", "none"])
def test_portrait_scales_matter_only_with_cross_attention(mode):
    changes = {"cross_attention": mode, "resolution": R}
    if mode != "encoder_decoder":
        changes["cross_attention_levels"] = ()
    net = perturbed(build("base_tiny", **changes))
    cfg = net.config
    x, t, p = triplane(cfg, 1), torch.tensor([50]), portrait(cfg, 1)
    other = portrait(cfg, 1, seed=7)  # random changes: a constant shift would vanish in the tokenizer's GroupNorm
    other_y1, other_y3, other_global = ({**p, key: other[key]} for key in ("y1", "y3", "global"))
    with torch.no_grad():
        ref, d1, d3, dg = (net(x, t, q) for q in (p, other_y1, other_y3, other_global))
    assert (dg - ref).abs().max() > 1e-3  # the global token always reaches the time embedding
    changed = [(d - ref).abs().max().item() > 1e-4 for d in (d1, d3)]
    assert changed == {"encoder_decoder": [True, True], "middle": [True, True], "none": [False, False]}[mode]
    if mode == "none":
        assert torch.equal(d1, ref) and torch.equal(d3, ref)


def test_preset_parameter_counts():
    counts = {name: TriplaneUNet(TriplaneUNetConfig.preset(name)).num_parameters()
              for name in ("base_tiny", "upsample_tiny")}
    print("parameters:", counts)
    assert 6.0e6 < counts["base_tiny"] < 7.5e6
    assert 1.5e6 < counts["upsample_tiny"] < 2.0e6  # model_channels 16: a CPU-trainable upsampler
    with torch.device("meta"):  # no memory, no init time: just the architecture
        paper = {name: TriplaneUNet(TriplaneUNetConfig.preset(name)).num_parameters()
                 for name in ("base_paper", "upsample_paper")}
    print("parameters:", paper)
    assert 330e6 < paper["base_paper"] < 380e6  # authors: 366.8 M
    assert 30e6 < paper["upsample_paper"] < 90e6


def test_base_paper_topology_runs_at_reduced_size():
    net = perturbed(build("base_paper", resolution=16, model_channels=64, head_dim=32, context_dim=64,
                          num_res_blocks=1, dropout=0.0))
    cfg = net.config
    with torch.no_grad():
        out = net(triplane(cfg, 1), torch.tensor([3]), portrait(cfg, 1))
    assert out.shape == (1, 64, 16, 48) and torch.isfinite(out).all()
    assert [net.cross_scale[lvl] for lvl in (2, 3, 4)] == [0, 1, 2]  # 32/16/8 ↔ y1/y2/y3 as the authors


def test_five_adam_steps_reduce_mse_to_a_fixed_target():
    net = build("base_tiny").train()
    cfg = net.config
    g = torch.Generator().manual_seed(3)
    x, p = triplane(cfg, 1), portrait(cfg, 1)
    target = torch.randn(1, cfg.out_channels, cfg.resolution, 3 * cfg.resolution, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = (net(x, torch.tensor([100]), p) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1e-3, losses


def test_gradient_checkpointing_gives_the_same_gradients():
    net = perturbed(build("upsample_tiny", resolution=R)).train()
    cfg = net.config
    x, lr, p = triplane(cfg, 1), triplane(cfg, 1, seed=4), portrait(cfg, 1)
    grads = []
    for flag in (False, True):
        net.gradient_checkpointing = flag
        net.zero_grad()
        net(x, torch.tensor([20]), p, lowres=lr).square().mean().backward()
        grads.append(net.conv_in.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def test_lowres_is_required_by_the_upsampler_and_refused_by_the_base(base):
    up = build("upsample_tiny", resolution=R)
    x = triplane(up.config, 1)
    with pytest.raises(ValueError, match="lowres"):
        up(x, torch.tensor([1]))
    with pytest.raises(ValueError, match="lowres"):
        base(triplane(base.config, 1), torch.tensor([1]), lowres=x)
    with pytest.raises(ValueError, match="rolled-out"):
        base(torch.randn(1, 16, R, R), torch.tensor([1]))


@pytest.mark.parametrize("changes, field", [
    ({"resolution": 30}, "resolution"),
    ({"channels": 0}, "channels"),
    ({"attention_levels": (3,)}, "attention_levels"),
    ({"aware3d_levels": (-1,)}, "aware3d_levels"),
    ({"cross_attention": "everywhere"}, "cross_attention"),
    ({"cross_attention": "middle"}, "cross_attention_levels"),  # levels listed but unused
    ({"head_dim": 48}, "head_dim"),
    ({"portrait_sizes": (64, 32, 18)}, "portrait_sizes"),
])
def test_config_validation(changes, field):
    with pytest.raises(ConfigError, match=field):
        TriplaneUNetConfig.preset("base_tiny", **changes)


def test_state_dict_and_config_round_trip():
    net = perturbed(build("upsample_tiny", resolution=R))
    cfg = TriplaneUNetConfig.from_dict(net.config.to_dict())
    assert cfg == net.config
    clone = TriplaneUNet(cfg).eval()
    clone.load_state_dict(load_safetensors(save_safetensors(net.state_dict())))
    x, lr, p = triplane(cfg, 1), triplane(cfg, 1, seed=4), portrait(cfg, 1)
    with torch.no_grad():
        assert torch.equal(clone(x, torch.tensor([9]), p, lowres=lr), net(x, torch.tensor([9]), p, lowres=lr))
