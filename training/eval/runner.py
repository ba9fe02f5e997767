"""`rodinhd eval`: the paper's evaluation (Sec. 4.1, Tables 1–3, Fig. 9) of a trained model on held-out avatars.

For each held-out avatar, the methods of `training.diffusion.evaluate.standard_methods` (cascade, base only,
unconditional, nearest-neighbour retrieval) make a triplane; its renders from the avatar's test cameras are scored
against the ground truth (PSNR, SSIM, the MobileNetV2 feature distance that stands in for LPIPS) and, over all
avatars, by FID (Table 1; the unconditional row is Table 2's number). 3D consistency (Table 3) refits a triplane to
orbit renders of each generated avatar; the epipolar-line images (Fig. 9) show one image row over a yaw sweep.
Outputs: OUT/eval.json (every number, setting, hash and timing), OUT/eval.md, OUT/epipolar_*.png.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.errors import UserError
from engine.io import atomic_write, atomic_write_json, atomic_write_text
from engine.metrics.perceptual import NAME as PERCEPTUAL_NAME
from engine.pipeline import AvatarPipeline
from engine.triplane import load_triplane
from training.diffusion.evaluate import Rendered, Retrieval, evaluate_methods, standard_methods
from training.eval.consistency import ConsistencySettings, consistency, epipolar_image
from training.eval.report import FID_NAME, caveats, markdown_report
from training.eval.selection import ground_truth_triplanes, retrieval_bank, select_avatars
from training.fit.colour import front_view, likeness_report

LABELS = {"cascade": "cascade (base + upsample)", "base_only": "base only (low-resolution triplane)",
          "unconditional": "unconditional (one seed per avatar)", "retrieval": "nearest-neighbour retrieval",
          "ground_truth": "ground-truth fitted triplane (reference)"}


@dataclass
class EvalSettings:
    model: Path
    data: Path
    triplanes: Path
    out: Path
    avatars: list[str] | None = None
    heldout: int | None = None
    views: int = 4
    """Ground-truth test views per avatar (the dataset's test split)."""
    size: int = 128
    steps: int = 10
    guidance: float = 1.3
    seed: int = 0
    fid: bool = True
    consistency: ConsistencySettings | None = field(default_factory=ConsistencySettings)
    """None skips the refits (Table 3)."""
    consistency_methods: list[str] | None = None
    """Methods whose avatars are refitted (default: the model itself, cascade or base only)."""
    gt_triplanes: Path | None = None
    """Fit run holding the evaluated avatars' own triplanes (default: --triplanes); used when present."""
    epipolar_frames: int = 64
    epipolar_sweep: float = 120.0
    epipolar_row: float = 0.4
    device: str = "cpu"


class Progress:
    """What the runner reports while it works; the CLI shows it with tqdm. The default does nothing."""

    def stage(self, name: str, total: int) -> None: ...

    def step(self, message: str = "") -> None: ...

    def close(self) -> None: ...


@dataclass
class _Kept:
    """Renders (for FID) and planes (for consistency / epipolar) collected while the methods are scored."""

    pred: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    truth: dict[str, torch.Tensor] = field(default_factory=dict)  # per avatar (the same for every method)
    planes: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)
    decoder: object = None  # when set, every method's front view (the portrait's camera) is kept for likeness
    fronts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __call__(self, r: Rendered) -> None:
        self.pred.setdefault(r.method, []).append(r.pred.clamp(0, 1))
        self.truth.setdefault(r.avatar, r.truth)
        if r.method in self.wanted:
            self.planes[(r.method, r.avatar)] = r.planes.detach()
        if self.decoder is not None:
            self.fronts.setdefault(r.method, {})[r.avatar] = front_view(r.planes.detach(), self.decoder)


def run_evaluation(settings: EvalSettings, progress: Progress | None = None) -> dict:
    """Evaluate; write OUT/eval.json, OUT/eval.md and the epipolar PNGs; return what eval.json holds."""
    progress = progress or Progress()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    pipe = AvatarPipeline.from_pretrained(settings.model, settings.device)
    training = [str(a) for a in pipe.info.get("training_avatars") or []]
    avatars = select_avatars(settings.data, training, settings.avatars, settings.heldout)
    bank = retrieval_bank(settings.triplanes, training, avatars, pipe.decoder)
    gt = ground_truth_triplanes(settings.gt_triplanes or settings.triplanes, avatars, pipe.decoder)
    retrieval = Retrieval(pipe, settings.data, settings.triplanes, bank)
    methods = standard_methods(pipe, retrieval, steps=settings.steps, guidance=settings.guidance)
    methods["unconditional"] = _seed_per_avatar(methods["unconditional"], avatars)
    primary = "cascade" if "cascade" in methods else "base_only"
    refitted = settings.consistency_methods or [primary]
    unknown = [m for m in refitted if m not in methods]
    if unknown:
        raise UserError(f"unknown --consistency-methods {unknown} (this model has {sorted(methods)})")
    kept = _Kept(wanted=set(refitted) | {primary}, decoder=pipe.decoder)
    timings["load_s"] = time.perf_counter() - start

    t = time.perf_counter()
    progress.stage("generate + score", len(avatars) * len(methods))
    results = evaluate_methods(methods, settings.data, avatars, pipe.decoder, settings.views, settings.size,
                               seed=settings.seed, progress=progress.step, keep=kept)
    timings["methods_s"] = time.perf_counter() - t

    colour = _colour_likeness(kept, gt, pipe, settings, timings)
    fid = _fid(kept, progress, timings) if settings.fid else None
    cons = _consistency(kept, refitted, gt, pipe, settings, progress, timings) if settings.consistency else None
    epipolar = _epipolar(kept, primary, avatars[0], gt, pipe, settings, progress, timings)
    progress.close()
    timings["total_s"] = time.perf_counter() - start
    record = _record(settings, pipe, training, avatars, bank, results, fid, cons, epipolar, timings)
    record["colour_likeness"] = colour
    atomic_write_json(settings.out / "eval.json", record)
    atomic_write_text(settings.out / "eval.md", markdown_report(record, LABELS))
    return record


def _seed_per_avatar(method, avatars: list[str]):
    """Unconditional samples with seed + avatar index: N held-out avatars give N different samples (FID needs a
    set of samples, not one sample N times)."""
    order = {name: i for i, name in enumerate(avatars)}
    return lambda portrait, seed: method(portrait, seed + order[Path(portrait).parent.name])


def _colour_likeness(kept: _Kept, gt: dict[str, Path], pipe: AvatarPipeline, settings: EvalSettings,
                     timings: dict) -> dict:
    """training.fit.colour's measure for every method's front views and for the avatars' own fitted triplanes
    (how far the decoder and the fits already are from the portraits: a bound on what generation can reach)."""
    t = time.perf_counter()
    fronts = dict(kept.fronts)
    if gt:
        fronts["ground_truth"] = {a: front_view(load_triplane(path, device=settings.device)[0], pipe.decoder)
                                  for a, path in gt.items()}
    out = {method: likeness_report(settings.data, views) for method, views in fronts.items()}
    timings["colour_s"] = time.perf_counter() - t
    return out


def _fid(kept: _Kept, progress: Progress, timings: dict) -> dict:
    from engine.metrics.fid import fid_from_features, inception_features

    t = time.perf_counter()
    truth = torch.cat(list(kept.truth.values()))
    progress.stage("FID (Inception features)", len(kept.pred) + 1)
    reference = inception_features(truth)
    progress.step("ground truth")
    values = {}
    for method, preds in kept.pred.items():
        values[method] = fid_from_features(inception_features(torch.cat(preds)), reference)
        progress.step(method)
    timings["fid_s"] = time.perf_counter() - t
    return {"name": FID_NAME, "images": int(len(truth)), "reference": "ground-truth test views of the evaluated "
            "avatars (over white)", "values": values, "unconditional": values.get("unconditional")}


def _consistency(kept: _Kept, methods: list[str], gt: dict[str, Path], pipe: AvatarPipeline,
                 settings: EvalSettings, progress: Progress, timings: dict) -> dict:
    t = time.perf_counter()
    jobs = [(m, a, p) for (m, a), p in kept.planes.items() if m in methods]
    jobs += [("ground_truth", a, load_triplane(path, device=settings.device)[0]) for a, path in gt.items()]
    progress.stage("3D consistency (refit)", len(jobs))
    out: dict[str, dict] = {}
    for method, avatar, planes in jobs:
        scores = consistency(planes, pipe.decoder, settings.consistency)
        out.setdefault(method, {"per_avatar": {}})["per_avatar"][avatar] = asdict(scores)
        progress.step(f"{avatar} {method}: {scores.psnr:.2f} dB")
    for result in out.values():
        per = list(result["per_avatar"].values())
        result["mean"] = {k: float(np.mean([p[k] for p in per])) for k in ("psnr", "ssim", "fit_psnr", "seconds")}
    timings["consistency_s"] = time.perf_counter() - t
    return {"settings": asdict(settings.consistency), "methods": out}


def _epipolar(kept: _Kept, method: str, avatar: str, gt: dict[str, Path], pipe: AvatarPipeline,
              settings: EvalSettings, progress: Progress, timings: dict) -> dict:
    from PIL import Image

    t = time.perf_counter()
    sources = [(method, kept.planes[(method, avatar)])]
    if avatar in gt:
        sources.append(("ground_truth", load_triplane(gt[avatar], device=settings.device)[0]))
    progress.stage("epipolar-line images", len(sources))
    files = {}
    for name, planes in sources:
        image = epipolar_image(planes, pipe.decoder, settings.size, settings.epipolar_frames,
                               settings.epipolar_sweep, row=settings.epipolar_row)
        file = f"epipolar_{name}_{avatar}.png"
        atomic_write(settings.out / file, lambda tmp, im=image: Image.fromarray(im).save(tmp, format="PNG"))
        files[name] = file
        progress.step(file)
    timings["epipolar_s"] = time.perf_counter() - t
    return {"avatar": avatar, "files": files, "frames": settings.epipolar_frames, "width": settings.size,
            "sweep_degrees": settings.epipolar_sweep, "row": round(settings.epipolar_row * (settings.size - 1)),
            "row_fraction": settings.epipolar_row, "ground_truth_available": avatar in gt}


def _record(settings: EvalSettings, pipe: AvatarPipeline, training: list[str], avatars: list[str],
            bank: list[str], results: dict, fid: dict | None, cons: dict | None, epipolar: dict,
            timings: dict) -> dict:
    for method, result in results.items():
        result["label"] = LABELS.get(method, method)
        if fid is not None:
            result["mean"]["fid"] = fid["values"][method]
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    return {
        "settings": plain,
        "model": {"path": str(settings.model), "hash": pipe.model_hash(),
                  "decoder_hash": pipe.info.get("decoder_hash"), "training_avatars": len(training),
                  "upsample": pipe.upsample is not None},
        "avatars": avatars, "held_out_checked": bool(training), "retrieval_bank": len(bank),
        "images_per_method": len(avatars) * settings.views,
        "metrics": {"psnr": "PSNR (dB) on the test views, over white", "ssim": "SSIM",
                    "perceptual": PERCEPTUAL_NAME, "fid": FID_NAME},
        "methods": results, "fid": fid, "consistency": cons, "epipolar": epipolar,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "caveats": caveats(settings, len(avatars) * settings.views),
    }
