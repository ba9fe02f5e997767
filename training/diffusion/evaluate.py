"""Held-out evaluation of a trained model: generate an avatar from each held-out portrait, render the avatar's
held-out test views and compare them with the ground truth (PSNR, SSIM, perceptual distance). Baselines:
the unconditional model and nearest-neighbour retrieval (the training avatar whose portrait features are closest).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.avatar import Avatar
from engine.metrics import psnr, ssim
from engine.metrics.perceptual import NAME as PERCEPTUAL_NAME
from engine.metrics.perceptual import PerceptualDistance
from engine.pipeline import AvatarPipeline
from engine.render import RenderConfig, render_image
from engine.triplane import load_triplane
from training.diffusion.dataset import PORTRAIT_FILE, triplane_files
from training.fit.data import load_eval_views


@dataclass
class Scores:
    psnr: float
    ssim: float
    perceptual: float
    seconds: float = 0.0


def render_views(planes: torch.Tensor, decoder, c2w: torch.Tensor, fov: float, size: int, samples: int = 64,
                 ) -> torch.Tensor:
    """[V, H, W, 3] renders over white of `planes` from each camera."""
    avatar = Avatar(planes, decoder)
    config = RenderConfig(samples=samples, background="white")
    return torch.stack([render_image(planes, decoder, cam, fov, size, size, config, avatar.occupancy()).rgb
                        for cam in c2w])


def score_views(pred: torch.Tensor, truth: torch.Tensor, perceptual: PerceptualDistance) -> Scores:
    """Mean PSNR / SSIM / perceptual distance over views; images [V, H, W, 3] in [0, 1]."""
    p, t = pred.permute(0, 3, 1, 2).clamp(0, 1), truth.permute(0, 3, 1, 2)
    with torch.no_grad():
        dist = perceptual(p, t).mean().item()
    return Scores(float(psnr(p, t).mean()), float(ssim(p, t).mean()), dist)


def feature_vector(features: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pooled multi-scale portrait features, each scale unit-normalised → [B, D] (for retrieval)."""
    parts = [features[k].mean(dim=(2, 3)) for k in ("y1", "y2", "y3")] + [features["global"]]
    return torch.cat([torch.nn.functional.normalize(p, dim=1) for p in parts], 1)


class Retrieval:
    """Nearest-neighbour baseline: return the fitted triplane of the closest training portrait."""

    def __init__(self, pipe: AvatarPipeline, data: Path, triplanes: Path, names: list[str]) -> None:
        files = {f.stem: f for f in triplane_files(triplanes)}
        self.names = [n for n in names if n in files]
        self.files = [files[n] for n in self.names]
        self.pipe = pipe
        with torch.no_grad():
            feats = [feature_vector(pipe.encode(Path(data) / n / PORTRAIT_FILE)) for n in self.names]
        self.bank = torch.cat(feats)

    def __call__(self, portrait: Path) -> tuple[str, torch.Tensor]:
        query = feature_vector(self.pipe.encode(portrait))
        best = int(torch.cdist(query, self.bank).argmin())
        planes, _ = load_triplane(self.files[best])
        return self.names[best], planes


Method = Callable[[Path, int], torch.Tensor]  # (portrait path, seed) → raw triplane [3, C, R, R]


@dataclass
class Rendered:
    """One method's result on one avatar, as scored: what `evaluate_methods` hands to its `keep` callback."""

    avatar: str
    method: str
    planes: torch.Tensor  # [3, C, R, R]
    pred: torch.Tensor  # [V, H, W, 3] renders over white
    truth: torch.Tensor  # [V, H, W, 3] ground-truth test views over white


def evaluate_methods(methods: dict[str, Method], data: Path, avatars: list[str], decoder, views: int = 4,
                     size: int = 128, seed: int = 0, progress: Callable[[str], None] | None = None,
                     keep: Callable[[Rendered], None] | None = None) -> dict[str, dict]:
    """Every method on every held-out avatar → {method: {"mean": Scores-dict, "per_avatar": {...}}}.
    `keep(Rendered)` is called after each (avatar, method) for callers that need the renders (FID) or planes."""
    perceptual = PerceptualDistance()
    results: dict[str, dict] = {name: {"per_avatar": {}} for name in methods}
    for avatar in avatars:
        folder = Path(data) / avatar
        truth = load_eval_views(folder, views, resolution=size)
        target = truth.on_white()
        for name, method in methods.items():
            started = time.perf_counter()
            planes = method(folder / PORTRAIT_FILE, seed)
            seconds = time.perf_counter() - started
            pred = render_views(planes, decoder, truth.c2w, truth.camera_angle_x, size)
            score = score_views(pred, target, perceptual)
            score.seconds = seconds
            results[name]["per_avatar"][avatar] = score.__dict__
            if keep:
                keep(Rendered(avatar, name, planes, pred, target))
            if progress:
                progress(f"{avatar} {name}: {score.psnr:.2f} dB")
    for name, result in results.items():
        per = list(result["per_avatar"].values())
        result["mean"] = {k: sum(p[k] for p in per) / len(per) for k in ("psnr", "ssim", "perceptual", "seconds")}
    return results


def markdown_table(results: dict[str, dict], labels: dict[str, str] | None = None,
                   fid: dict[str, float] | None = None, fid_images: int = 0) -> str:
    """One row per method (mean scores); with `fid` ({method: FID}) an FID column naming its image count."""
    fid_head = f" FID ({fid_images} images) ↓ |" if fid is not None else ""
    rows = ["| method | PSNR ↑ | SSIM ↑ | " + PERCEPTUAL_NAME + " ↓ |" + fid_head + " seconds / avatar |",
            "|---|---|---|---|" + ("---|" if fid is not None else "") + "---|"]
    for name, result in results.items():
        m = result["mean"]
        fid_cell = (f" {fid[name]:.2f} |" if name in fid else " – |") if fid is not None else ""
        rows.append(f"| {(labels or {}).get(name, name)} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
                    f"{m['perceptual']:.4f} |{fid_cell} {m['seconds']:.1f} |")
    return "\n".join(rows)


def standard_methods(pipe: AvatarPipeline, retrieval: Retrieval | None, steps: int = 10, guidance: float = 1.3,
                     sampler: str = "ddim") -> dict[str, Method]:
    """The model (cascade and base-only), the unconditional model, and retrieval when given."""
    methods: dict[str, Method] = {}
    if pipe.upsample is not None:
        methods["cascade"] = lambda p, s: pipe(p, guidance=guidance, steps=steps, sampler=sampler, seed=s).planes
    methods["base_only"] = lambda p, s: pipe(p, guidance=guidance, steps=steps, sampler=sampler, seed=s,
                                             stages="base").planes
    stages = "cascade" if pipe.upsample is not None else "base"
    methods["unconditional"] = lambda p, s: pipe.unconditional(seed=s, steps=steps, sampler=sampler,
                                                               stages=stages).planes
    if retrieval is not None:
        methods["retrieval"] = lambda p, s: retrieval(p)[1]
    return methods


__all__ = ["Rendered", "Retrieval", "Scores", "evaluate_methods", "markdown_table", "standard_methods"]
