"""Colour likeness of fitted triplanes to their avatars' portraits (the decoder-reach measure).

The front view of a fit (the portrait's camera) and the portrait, both over white, are reduced to a coarse
colour layout: `grid`² block means in CIE Lab. Their distance is the mean ΔE76 over the blocks where either
image shows the avatar. Over a set of avatars: the mean, the worst, and whether each fit is closer to its own
portrait than to any other avatar's.

Per region (synthetic avatars only: their attributes say how to find the regions): hair, skin and clothing
pixels of each avatar come from re-rendering it with that region in a probe colour (training.text.colours).
A region agrees when the fit's and the portrait's median colours there name the same colour of the generator's
palette (nearest in Lab); the ΔE between the two medians is kept too.

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
from engine.io import atomic_write, atomic_write_json
from engine.portrait import load_portrait
from engine.triplane import load_triplane
from training.data.format import PORTRAIT_FILE, read_attributes
from training.diffusion.dataset import triplane_files
from training.synth import palettes
from training.text.colours import BACKGROUND, MIN_PIXELS, hair_visible, region_masks, srgb_to_lab

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
    return load_portrait(avatar_folder / PORTRAIT_FILE, resolution).permute(1, 2, 0).numpy()


def _named_palette() -> dict[str, dict[str, tuple[float, float, float]]]:
    skin = {name: palettes.skin_colour(upper - 0.1) for upper, name in palettes.SKIN_NAMES}
    return {"hair": {**palettes.HAIR_NATURAL, **palettes.HAIR_DYED}, "skin": skin, "cloth": dict(palettes.CLOTH)}


NAMED = _named_palette()


def region_colour(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Median colour of the avatar's pixels under `mask` (background excluded), None when too few."""
    pixels = rgb[mask]
    pixels = pixels[pixels.min(-1) < BACKGROUND]
    return np.median(pixels, axis=0) if len(pixels) >= MIN_PIXELS else None


def colour_name(rgb: np.ndarray, region: str) -> str:
    names = list(NAMED[region])
    refs = srgb_to_lab(np.array([NAMED[region][n] for n in names]))
    return names[int(np.argmin(np.linalg.norm(refs - srgb_to_lab(rgb), axis=-1)))]


def region_agreement(front: np.ndarray, portrait: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """{region: {portrait, fit (palette names), delta_e, agree}} for the regions the portrait shows; a region
    the fit leaves empty (background) disagrees, with fit "none" and no ΔE."""
    rows = {}
    for region, mask in masks.items():
        want = region_colour(portrait, mask)
        if want is None:
            continue
        got = region_colour(front, mask)
        name = colour_name(want, region)
        if got is None:
            rows[region] = {"portrait": name, "fit": "none", "agree": False, "delta_e": None}
            continue
        fit_name = colour_name(got, region)
        rows[region] = {"portrait": name, "fit": fit_name, "agree": name == fit_name,
                        "delta_e": round(float(np.linalg.norm(srgb_to_lab(want) - srgb_to_lab(got))), 3)}
    return rows


def avatar_masks(folders: list[Path], resolution: int = RESOLUTION) -> dict[str, dict[str, np.ndarray]] | None:
    """Each synthetic avatar's hair / skin / clothing masks in the portrait framing (hair only where it shows);
    None when any avatar has no attributes (not a synthetic dataset)."""
    metas = [read_attributes(folder) for folder in folders]
    if any(m is None or "seed" not in m for m in metas):
        return None
    masks = region_masks([int(m["seed"]) for m in metas], resolution)
    out = {}
    for i, (folder, meta) in enumerate(zip(folders, metas)):
        shows_hair = hair_visible({"style": meta.get("hair", {}).get("style"),
                                   "hat": meta.get("accessories", {}).get("hat", "none")})
        out[Path(folder).name] = {r: m[i] for r, m in masks.items() if r != "hair" or shows_hair}
    return out


def summarise_regions(per_avatar: dict) -> dict:
    rows = [(region, row) for r in per_avatar.values() for region, row in r.get("regions", {}).items()]
    if not rows:
        return {}
    share = lambda sel: round(sum(row["agree"] for _, row in sel) / len(sel), 4) if sel else None  # noqa: E731
    by_region = {name: share([x for x in rows if x[0] == name]) for name in NAMED}
    return {"region_agreement": share(rows), "region_agreement_by_region": by_region,
            "region_delta_e": _mean_or_none([row["delta_e"] for _, row in rows if row["delta_e"] is not None])}


def _mean_or_none(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def colour_report(data: Path, fits: dict[str, Path], decoder: TriplaneDecoder, resolution: int = RESOLUTION
                  ) -> dict:
    """fits: avatar name → triplane file. Per avatar: ΔE to its own portrait, to the nearest other portrait,
    and whether its own is the closest; then the means."""
    return likeness_report(data, fit_fronts(fits, decoder, resolution), resolution)


def fit_fronts(fits: dict[str, Path], decoder: TriplaneDecoder, resolution: int = RESOLUTION
               ) -> dict[str, np.ndarray]:
    """avatar name → front view of its triplane file (checked against the decoder's hash)."""
    digest = decoder_hash(decoder)
    return {n: front_view(load_triplane(path, digest)[0], decoder, resolution) for n, path in sorted(fits.items())}


def likeness_report(data: Path, fronts: dict[str, np.ndarray], resolution: int = RESOLUTION) -> dict:
    """fronts: avatar name → its front view ([R, R, 3] over white, e.g. a fit's or a generated avatar's)."""
    names = sorted(fronts)
    portrait_images = {n: portrait_rgb(data / n, resolution) for n in names}
    portraits = {n: coarse_layout(img) for n, img in portrait_images.items()}
    layouts = {n: coarse_layout(fronts[n]) for n in names}
    masks = avatar_masks([data / n for n in names], resolution) or {}
    per_avatar = {}
    for n in names:
        errors = {m: _layout_distance(layouts[n], portraits[m]) for m in names}
        others = [e for m, e in errors.items() if m != n]
        per_avatar[n] = {"own_delta_e": round(errors[n], 3), "nearest_other_delta_e": round(min(others), 3)
                         if others else None, "own_is_closest": not others or errors[n] < min(others)}
        if n in masks:
            per_avatar[n]["regions"] = region_agreement(fronts[n], portrait_images[n], masks[n])
    own = [r["own_delta_e"] for r in per_avatar.values()]
    return {"avatars": len(names), "mean_delta_e": round(float(np.mean(own)), 3),
            "worst_delta_e": round(float(np.max(own)), 3),
            "own_closest": sum(r["own_is_closest"] for r in per_avatar.values()), **summarise_regions(per_avatar),
            "per_avatar": per_avatar}


REPORT_FILE = "colour.json"
REPORT_AVATARS = 96


def write_fit_report(data: Path, out: Path, names: list[str], decoder: TriplaneDecoder,
                     limit: int = REPORT_AVATARS) -> dict | None:
    """After a stage-2 run: the colour report of its first `limit` fits (own-closest is among those), written to
    OUT/colour.json; None when the dataset has no portraits to compare with."""
    names = [n for n in names if (Path(data) / n / PORTRAIT_FILE).is_file()][:limit]
    if not names:
        return None
    from training.fit.stage2 import triplane_path

    report = colour_report(Path(data), {n: triplane_path(out, n) for n in names}, decoder)
    atomic_write_json(Path(out) / REPORT_FILE, report)
    return report


def summary_line(report: dict) -> str:
    line = (f"colour vs portrait over {report['avatars']} fits: layout ΔE {report['mean_delta_e']:.2f} mean / "
            f"{report['worst_delta_e']:.2f} worst, own portrait closest {report['own_closest']}/{report['avatars']}")
    if report.get("region_agreement") is not None:
        line += f", region agreement {100 * report['region_agreement']:.0f} %"
    return line


def likeness_sheet(data: Path, rows: list[dict[str, np.ndarray]], path: Path, columns: int = 13,
                   cell: int = RESOLUTION) -> None:
    """A PNG: for each avatar (columns, wrapped every `columns`), its portrait on top and below it the front view
    of each row of fits (e.g. one row per decoder)."""
    from PIL import Image

    names = sorted(rows[0])
    blocks = []
    for start in range(0, len(names), columns):
        chunk = names[start:start + columns]
        lines = [[portrait_rgb(Path(data) / n, cell) for n in chunk]] + [[row[n] for n in chunk] for row in rows]
        pad = [np.ones((cell, cell, 3))] * (columns - len(chunk))
        blocks.append(np.concatenate([np.concatenate(line + pad, 1) for line in lines], 0))
        blocks.append(np.ones((cell // 4, cell * columns, 3)))  # a white gap between blocks
    image = np.round(np.clip(np.concatenate(blocks[:-1], 0), 0, 1) * 255).astype(np.uint8)
    atomic_write(Path(path), lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Colour likeness of fitted triplanes to their portraits")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--fits", type=Path, required=True, nargs="+",
                        help="stage-2 run folder(s) (or their triplanes); several are compared side by side")
    parser.add_argument("--decoder", type=Path, required=True, nargs="+",
                        help="the decoder each --fits was made with (a decoder folder or a run folder with one)")
    parser.add_argument("--sheet", type=Path, help="also write a PNG: portraits above each run's front views")
    args = parser.parse_args(argv)
    from training.fit.stage2_run import decoder_folder  # stage2_run imports this module for its run report

    try:
        if len(args.fits) != len(args.decoder):
            raise UserError(f"give one --decoder per --fits ({len(args.fits)} fits, {len(args.decoder)} decoders)")
        rows = []
        for fits_dir, decoder_dir in zip(args.fits, args.decoder):
            fits = {path.stem: path for path in triplane_files(fits_dir)}
            fronts = fit_fronts(fits, load_decoder(decoder_folder(decoder_dir)))
            if rows and sorted(fronts) != sorted(rows[0]):
                raise UserError(f"{fits_dir}: holds other avatars than {args.fits[0]}")
            report = likeness_report(args.data, fronts)
            print(f"{fits_dir}: {json.dumps({k: v for k, v in report.items() if k != 'per_avatar'})}")
            for name, row in report["per_avatar"].items():
                print(" ", name, row)
            rows.append(fronts)
        if args.sheet:
            likeness_sheet(args.data, rows, args.sheet)
            print(f"sheet: {args.sheet}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
