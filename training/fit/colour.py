"""Colour likeness of fitted triplanes to their avatars' portraits (the decoder-reach measure).

The front view of a fit (the portrait's camera) and the portrait, both over white, are reduced to a coarse
colour layout: `grid`² block means in CIE Lab. Their distance is the mean ΔE76 over the blocks where either
image shows the avatar. Over a set of avatars: the mean, the worst, and whether each fit is closer to its own
portrait than to any other avatar's.

    python -m training.fit.colour --data DATA --fits FITS_RUN --decoder DECODER
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from engine.avatar import Avatar
from engine.decoder import TriplaneDecoder, decoder_hash, load_decoder
from engine.errors import UserError
from engine.portrait import load_portrait
from engine.triplane import load_triplane
from training.diffusion.dataset import triplane_files
from training.fit.stage2_run import decoder_folder
from training.text.colours import BACKGROUND, srgb_to_lab

GRID = 8
RESOLUTION = 64


def coarse_layout(rgb: np.ndarray, grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """[H, W, 3] sRGB in [0, 1] (H, W multiples of grid) → (Lab block means [grid, grid, 3], foreground [grid,
    grid] bool: blocks whose mean is not the white background)."""
    h, w, _ = rgb.shape
    blocks = rgb.reshape(grid, h // grid, grid, w // grid, 3).mean((1, 3))
    return srgb_to_lab(blocks), blocks.min(-1) < BACKGROUND


def layout_error(a: np.ndarray, b: np.ndarray, grid: int = GRID) -> float:
    """Mean ΔE76 between two images' coarse layouts over the blocks where either shows something."""
    return _layout_distance(coarse_layout(a, grid), coarse_layout(b, grid))


def _layout_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    (lab_a, fg_a), (lab_b, fg_b) = a, b
    mask = fg_a | fg_b
    return float(np.linalg.norm(lab_a - lab_b, axis=-1)[mask].mean()) if mask.any() else 0.0


def front_view(planes, decoder: TriplaneDecoder, resolution: int = RESOLUTION) -> np.ndarray:
    return Avatar(planes, decoder).render_view(0.0, 0.0, resolution=resolution)[..., :3]


def portrait_rgb(avatar_folder: Path, resolution: int = RESOLUTION) -> np.ndarray:
    return load_portrait(avatar_folder / "portrait.png", resolution).permute(1, 2, 0).numpy()


def colour_report(data: Path, fits: dict[str, Path], decoder: TriplaneDecoder, resolution: int = RESOLUTION
                  ) -> dict:
    """fits: avatar name → triplane file. Per avatar: ΔE to its own portrait, to the nearest other portrait,
    and whether its own is the closest; then the means."""
    names, digest = sorted(fits), decoder_hash(decoder)
    portraits = {n: coarse_layout(portrait_rgb(data / n, resolution)) for n in names}
    fronts = {n: coarse_layout(front_view(load_triplane(fits[n], digest)[0], decoder, resolution)) for n in names}
    per_avatar = {}
    for n in names:
        errors = {m: _layout_distance(fronts[n], portraits[m]) for m in names}
        others = [e for m, e in errors.items() if m != n]
        per_avatar[n] = {"own_delta_e": round(errors[n], 3), "nearest_other_delta_e": round(min(others), 3)
                         if others else None, "own_is_closest": not others or errors[n] < min(others)}
    own = [r["own_delta_e"] for r in per_avatar.values()]
    return {"avatars": len(names), "mean_delta_e": round(float(np.mean(own)), 3),
            "worst_delta_e": round(float(np.max(own)), 3),
            "own_closest": sum(r["own_is_closest"] for r in per_avatar.values()), "per_avatar": per_avatar}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Colour likeness of fitted triplanes to their portraits")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--fits", type=Path, required=True, help="a stage-2 run folder (or its triplanes)")
    parser.add_argument("--decoder", type=Path, required=True,
                        help="the decoder the fits were made with (a decoder folder or a run folder with one)")
    args = parser.parse_args(argv)
    try:
        fits = {path.stem: path for path in triplane_files(args.fits)}
        report = colour_report(args.data, fits, load_decoder(decoder_folder(args.decoder)))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k != "per_avatar"}))
    for name, row in report["per_avatar"].items():
        print(name, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
