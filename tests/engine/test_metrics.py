"""engine.metrics: PSNR, SSIM (against an independent numpy port of scikit-image's algorithm), the plain-torch
MobileNetV2 (strict loading of torchvision's ImageNet checkpoint, ImageNet behaviour, feature pyramid) and the
MobileNetV2 feature distance that substitutes for LPIPS."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.metrics import (
    PERCEPTUAL_NAME, STAGE_CHANNELS, STAGE_STRIDES, MobileNetV2, MobileNetV2Features, PerceptualDistance,
    gaussian_window, imagenet_weights_path, mobilenet_v2, psnr, ssim,
)


def structured_image(n: int = 128, w: int | None = None) -> torch.Tensor:
    """A deterministic test picture `[1, 3, n, w]` in [0.1, 0.9]: a grating, a checkerboard, a disc, a ramp."""
    w = w or n
    y, x = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, w), indexing="ij")
    grating = torch.sin(2 * math.pi * 6 * x) * 0.5 + 0.5
    checker = ((x * 8).floor() + (y * 8).floor()) % 2
    disc = (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.09).float()
    return torch.stack([0.1 + 0.8 * grating, 0.15 + 0.7 * checker, 0.1 + 0.7 * disc + 0.1 * y])[None]


def blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Same-size separable Gaussian blur with reflect padding."""
    g = gaussian_window(2 * math.ceil(3 * sigma) + 1, sigma)
    n, c = g.numel(), img.shape[1]
    x = F.pad(img, (n // 2,) * 4, mode="reflect")
    x = F.conv2d(x, g.view(1, 1, n, 1).expand(c, 1, n, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, n).expand(c, 1, 1, n), groups=c)


def noisy(img: torch.Tensor, level: float, seed: int = 0) -> torch.Tensor:
    """`img` plus `level` × one fixed Gaussian noise field, clamped to [0, 1]."""
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(seed))
    return (img + level * noise).clamp(0, 1)


# ---- PSNR ----

def test_psnr_known_values_and_shapes():
    target = torch.rand(3, 3, 16, 20, generator=torch.Generator().manual_seed(0)) * 0.8
    out = psnr(target + 0.1, target)
    assert out.shape == (3,)
    torch.testing.assert_close(out, torch.full((3,), 20.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(psnr(255 * target + 25.5, 255 * target, max_val=255.0), torch.full((3,), 20.0),
                               atol=1e-4, rtol=0)
    single = psnr(target[0] + 0.01, target[0])
    assert single.dim() == 0 and abs(single.item() - 40.0) < 1e-3
    assert torch.isinf(psnr(target, target)).all()  # identical images: +inf, documented
    with pytest.raises(ValueError):
        psnr(target, target[:, :, :8])


def test_psnr_mask_averages_only_masked_pixels():
    target = torch.full((2, 3, 8, 8), 0.5)
    pred = target.clone()
    pred[..., :4] += 0.1   # left half: error 0.1 (20 dB)
    pred[..., 4:] += 0.3   # right half: error 0.3
    left = torch.zeros(8, 8, dtype=torch.bool)
    left[:, :4] = True
    torch.testing.assert_close(psnr(pred, target, mask=left), torch.full((2,), 20.0), atol=1e-4, rtol=0)
    # the same mask as [B, 1, H, W] floats, and as [B, H, W]
    torch.testing.assert_close(psnr(pred, target, mask=left.float().expand(2, 1, 8, 8)), torch.full((2,), 20.0),
                               atol=1e-4, rtol=0)
    right_only = target + 0.2 * (~left)  # errors only where the mask is off
    assert torch.isinf(psnr(right_only, target, mask=left.expand(2, 8, 8))).all()
    # per-image masks: image 0 sees the left half, image 1 the right half
    per_image = torch.stack([left, ~left])
    expected = torch.tensor([20.0, -20 * math.log10(0.3)])
    torch.testing.assert_close(psnr(pred, target, mask=per_image), expected, atol=1e-4, rtol=0)
    # an all-ones mask is the unmasked value; an empty mask gives nan
    torch.testing.assert_close(psnr(pred, target, mask=torch.ones(8, 8)), psnr(pred, target))
    assert torch.isnan(psnr(pred, target, mask=torch.zeros(8, 8))).all()
    with pytest.raises(ValueError):
        psnr(pred, target, mask=torch.ones(3, 8, 8))


# ---- SSIM ----

def _gaussian_filter_reflect(img: np.ndarray, sigma: float, truncate: float = 3.5) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(img, sigma, truncate=3.5, mode='reflect') for a 2-D float64 array, written as
    a direct separable correlation over a symmetric-padded image (scipy's 'reflect' is numpy's 'symmetric')."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    h, w = img.shape
    p = np.pad(img, radius, mode="symmetric")
    rows = sum(t * p[i:i + h, :] for i, t in enumerate(taps))
    return sum(t * rows[:, i:i + w] for i, t in enumerate(taps))


def reference_ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, data_range: float = 1.0) -> float:
    """Independent port of skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range, channel_axis=0) for `[C, H, W]` arrays: filter the full
    image, build the SSIM map, crop the window radius, average over pixels, then over channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    pad = int(3.5 * sigma + 0.5)
    values = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64)):
        ux, uy = _gaussian_filter_reflect(x, sigma), _gaussian_filter_reflect(y, sigma)
        vx = _gaussian_filter_reflect(x * x, sigma) - ux * ux
        vy = _gaussian_filter_reflect(y * y, sigma) - uy * uy
        vxy = _gaussian_filter_reflect(x * y, sigma) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        values.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(values))


def _ssim_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    img = structured_image(48, 61)[0]
    rand_a, rand_b = torch.rand(3, 40, 33, generator=g), torch.rand(3, 40, 33, generator=g)
    return [
        (rand_a, rand_b),                                    # unrelated random images
        (rand_a, (rand_a + 0.1 * torch.randn(rand_a.shape, generator=g)).clamp(0, 1)),
        (img, noisy(img[None], 0.05, seed=2)[0]),            # structured + noise
        (img, blur(img[None], 1.5)[0]),                      # structured + blur
        (img, 0.6 * img + 0.3),                              # contrast/brightness change
    ]


@pytest.mark.parametrize("case", range(5))
def test_ssim_matches_numpy_reference(case):
    a, b = _ssim_pairs()[case]
    expected = reference_ssim(a.numpy(), b.numpy())
    assert abs(ssim(a, b).item() - expected) < 1e-4
    assert abs(ssim(a.double(), b.double()).item() - expected) < 1e-10


def test_ssim_invariants():
    img = structured_image(64)
    assert abs(ssim(img, img).item() - 1.0) < 1e-6
    values = [ssim(img, noisy(img, s)).item() for s in (0.01, 0.03, 0.1, 0.3)]
    assert all(u > v for u, v in zip(values, values[1:])), values
    other = noisy(img, 0.1)
    assert abs(ssim(img, other).item() - ssim(other, img).item()) < 1e-6
    # constant images: closed form (2ab + C1) / (a² + b² + C1) (variances vanish)
    a, b, c1 = 0.5, 0.6, 0.01 ** 2
    const = ssim(torch.full((3, 16, 16), a), torch.full((3, 16, 16), b))
    assert const.dim() == 0 and abs(const.item() - (2 * a * b + c1) / (a * a + b * b + c1)) < 1e-6
    # batches: one value per image, equal to the unbatched values
    batch = torch.cat([img, other])
    out = ssim(batch, torch.cat([other, other]))
    assert out.shape == (2,)
    torch.testing.assert_close(out, torch.stack([ssim(img[0], other[0]), torch.tensor(1.0)]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        ssim(torch.rand(3, 10, 30), torch.rand(3, 10, 30))
    # differentiable (usable as a loss)
    x = other.clone().requires_grad_(True)
    ssim(x, img).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---- MobileNetV2 ----

@pytest.fixture(scope="module")
def features() -> MobileNetV2Features:
    return MobileNetV2Features("imagenet")


def test_torchvision_checkpoint_loads_strictly():
    path = imagenet_weights_path()
    assert path.name == "mobilenet_v2-b0353104.pth" and path.is_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = MobileNetV2()
    assert set(net.state_dict()) == set(state)
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert tuple(net.features[0][0].weight.shape) == (32, 3, 3, 3)
    assert tuple(net.classifier[1].weight.shape) == (1000, 1280)
    assert sum(p.numel() for p in net.parameters()) == 3_504_872  # torchvision's MobileNetV2 count
    torch.testing.assert_close(mobilenet_v2("imagenet").state_dict()["features.18.1.running_var"],
                               state["features.18.1.running_var"])
    torch.testing.assert_close(mobilenet_v2(path).classifier[1].bias, state["classifier.1.bias"])
    with pytest.raises(FileNotFoundError):
        mobilenet_v2("/nonexistent/mobilenet.pth")


def _grace_hopper_224() -> torch.Tensor:
    """matplotlib's public-domain Grace Hopper photo, resized (short side 256) and centre-cropped to 224²."""
    from matplotlib.cbook import get_sample_data
    from PIL import Image

    img = Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


def test_imagenet_behaviour(features):
    with torch.no_grad():
        for x in (torch.full((1, 3, 224, 224), 0.5), torch.rand(2, 3, 224, 224, generator=torch.Generator()
                                                                .manual_seed(0))):
            logits = features.classify(x)
            assert logits.shape == (x.shape[0], 1000) and torch.isfinite(logits).all()
            torch.testing.assert_close(logits.softmax(-1).sum(-1), torch.ones(x.shape[0]))
        # the classic ImageNet sanity photo: a uniformed officer with a bow tie
        top5 = features.classify(_grace_hopper_224()).softmax(-1)[0].topk(5).indices.tolist()
    assert 652 in top5 and 457 in top5, top5  # "military uniform", "bow tie"


@pytest.mark.parametrize("size", [(224, 224), (100, 75)])
def test_feature_pyramid_shapes(features, size):
    h, w = size
    with torch.no_grad():
        out = features(torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)))
    assert list(out) == ["s2", "s4", "s8", "s16", "s32"]
    for name, f in out.items():
        stride = STAGE_STRIDES[name]
        assert f.shape == (2, STAGE_CHANNELS[name], math.ceil(h / stride), math.ceil(w / stride)), name
        assert torch.isfinite(f).all()
    assert features.out_channels == STAGE_CHANNELS


def test_feature_subset_and_random_init():
    few = MobileNetV2Features(weights=None, stages=("s8", "s2"))
    assert few.stages == ("s2", "s8") and few.out_channels == {"s2": 16, "s8": 32}
    out = few(torch.rand(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"s2": (1, 16, 32, 32), "s8": (1, 32, 8, 8)}
    # the normalisation constants are not part of the checkpoint: the state dict is torchvision's, under `net.`
    assert all(k.startswith("net.") for k in few.state_dict())
    with pytest.raises(ValueError):
        MobileNetV2Features(weights=None, stages=("s64",))


# ---- perceptual distance (LPIPS substitute) ----

@pytest.fixture(scope="module")
def perceptual() -> PerceptualDistance:
    return PerceptualDistance()


def test_perceptual_is_named_as_a_substitute(perceptual):
    assert PERCEPTUAL_NAME == PerceptualDistance.NAME == "MobileNetV2 feature distance (LPIPS substitute)"
    assert "LPIPS substitute" in perceptual.NAME


def test_perceptual_identity_symmetry_and_shapes(perceptual):
    img = structured_image(96)
    other = noisy(img, 0.1)
    with torch.no_grad():
        assert perceptual(img, img).abs().max().item() <= 1e-6
        d_ab, d_ba = perceptual(img, other), perceptual(other, img)
        batch = perceptual(torch.cat([img, other, img]), torch.cat([other, img, img]))
        single = perceptual(img[0], other[0])
    assert d_ab.shape == (1,) and d_ab.item() > 0.05
    torch.testing.assert_close(d_ab, d_ba, atol=1e-6, rtol=1e-5)
    assert batch.shape == (3,) and single.dim() == 0
    torch.testing.assert_close(batch, torch.cat([d_ab, d_ab, torch.zeros(1)]), atol=1e-5, rtol=1e-4)


def test_perceptual_monotone_in_noise_and_blur(perceptual):
    img = structured_image(96)
    with torch.no_grad():
        by_noise = [perceptual(img, noisy(img, s)).item() for s in (0.01, 0.03, 0.1, 0.3)]
        by_blur = [perceptual(img, blur(img, s)).item() for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(u < v for u, v in zip(by_noise, by_noise[1:])), by_noise
    assert all(u < v for u, v in zip(by_blur, by_blur[1:])), by_blur


def test_perceptual_gradient_reaches_the_input_and_backbone_stays_frozen(perceptual):
    img = structured_image(64)
    x = noisy(img, 0.1).requires_grad_(True)
    perceptual(x, img).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in perceptual.parameters())
    # a training loop calling .train() must not switch the frozen BatchNorm layers to batch statistics
    perceptual.train()
    assert not perceptual.training and not any(m.training for m in perceptual.modules())
    # gradient at identical inputs is finite (zero-safe normalisation)
    y = img.clone().requires_grad_(True)
    perceptual(y, img).sum().backward()
    assert torch.isfinite(y.grad).all()
