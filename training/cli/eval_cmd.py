"""`rodinhd eval`: evaluate a trained model on held-out avatars like the paper's Sec. 4 (Tables 1–3, Fig. 9):
PSNR / SSIM / MobileNetV2-feature distance (LPIPS substitute) / FID per method (cascade, base only, unconditional,
nearest-neighbour retrieval), 3D consistency by refitting a triplane to orbit renders, and epipolar-line images.
Writes OUT/eval.json, OUT/eval.md and OUT/epipolar_*.png (see training.eval)."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError
from training.cli.common import int_arg
from training.eval import ConsistencySettings, EvalSettings  # their defaults are the flags' defaults

METHODS = ("cascade", "base_only", "unconditional", "retrieval")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a model on held-out avatars (PSNR, SSIM, perceptual, FID, 3D consistency)",
        description="rodinhd eval --model MODEL --data DATASET --triplanes FIT_RUN (--avatars A ... | --heldout K) "
                    "--out DIR",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder (rodinhd model build)")
    p.add_argument("--data", type=Path, required=True, help="dataset with the held-out avatars' views")
    p.add_argument("--triplanes", type=Path, required=True,
                   help="fit run of the model's training avatars (the retrieval baseline's bank)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--avatars", nargs="+", metavar="AVATAR", help="held-out avatars of --data to evaluate")
    which.add_argument("--heldout", type=int_arg, metavar="K",
                       help="evaluate the first K avatars of --data that the model was not trained on")
    p.add_argument("--out", type=Path, default=Path("eval"), help="output folder")
    p.add_argument("--views", type=int_arg, default=EvalSettings.views, help="ground-truth test views per avatar")
    p.add_argument("--size", type=int_arg, default=EvalSettings.size, help="render size of the scored views (pixels)")
    p.add_argument("--steps", type=int_arg, default=EvalSettings.steps, help="DDIM sampling steps per stage")
    p.add_argument("--guidance", type=float, default=EvalSettings.guidance, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int_arg, default=EvalSettings.seed,
                   help="sampling seed (unconditional: seed + avatar index)")
    p.add_argument("--skip-fid", action="store_true", help="no FID (saves the Inception passes)")
    p.add_argument("--skip-consistency", action="store_true", help="no 3D-consistency refits (the slow part)")
    c = p.add_argument_group("3D consistency (Table 3) and epipolar images (Fig. 9)")
    c.add_argument("--consistency-methods", nargs="+", choices=METHODS, metavar="METHOD",
                   help=f"methods whose avatars are refitted, of {', '.join(METHODS)} (default: the model: "
                        f"cascade, or base_only without an upsampler)")
    c.add_argument("--consistency-views", type=int_arg, default=ConsistencySettings.views,
                   help="orbit renders per avatar")
    c.add_argument("--consistency-holdout", type=int_arg, default=ConsistencySettings.holdout,
                   help="renders kept out of the refit")
    c.add_argument("--consistency-size", type=int_arg, default=ConsistencySettings.size,
                   help="render size of the refit views")
    c.add_argument("--consistency-steps", type=int_arg, default=ConsistencySettings.steps,
                   help="refit optimisation steps")
    c.add_argument("--consistency-rays", type=int_arg, default=ConsistencySettings.rays, help="rays per refit step")
    c.add_argument("--gt-triplanes", type=Path,
                   help="fit run with the evaluated avatars' own triplanes (reference rows; default: --triplanes)")
    c.add_argument("--epipolar-frames", type=int_arg, default=EvalSettings.epipolar_frames,
                   help="frames of the yaw sweep (image height)")
    c.add_argument("--epipolar-sweep", type=float, default=EvalSettings.epipolar_sweep,
                   help="yaw range in degrees, centred on frontal")
    c.add_argument("--epipolar-row", type=float, default=EvalSettings.epipolar_row,
                   help="image row, as a fraction of the height")
    p.add_argument("--lpips-weights", type=Path, help="real LPIPS (not implemented: refused with a message)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.set_defaults(handler=run)


def _check(args) -> None:
    if args.lpips_weights is not None:
        raise UserError("real LPIPS is not implemented; the perceptual column is the MobileNetV2-feature distance "
                        "(LPIPS substitute) — run without --lpips-weights")
    for flag in ("model", "data", "triplanes", "gt_triplanes"):
        path = getattr(args, flag)
        if path is not None and not path.is_dir():
            raise UserError(f"--{flag.replace('_', '-')} {path}: no such folder")
    positive = {"--views": args.views, "--steps": args.steps, "--consistency-views": args.consistency_views,
                "--consistency-steps": args.consistency_steps, "--consistency-rays": args.consistency_rays}
    for flag, value in positive.items():
        if value < 1:
            raise UserError(f"{flag} must be at least 1 (got {value})")
    if not 16 <= args.size <= 2048 or not 16 <= args.consistency_size <= 2048:
        raise UserError(f"--size and --consistency-size must be between 16 and 2048 (got {args.size}, "
                        f"{args.consistency_size})")
    if not 0 < args.consistency_holdout < args.consistency_views:
        raise UserError(f"--consistency-holdout must be between 1 and --consistency-views - 1 "
                        f"(got {args.consistency_holdout})")
    if args.epipolar_frames < 2 or not 0.0 <= args.epipolar_row <= 1.0:
        raise UserError("--epipolar-frames must be ≥ 2 and --epipolar-row between 0 and 1")


def run(args) -> int:
    from training.eval import run_evaluation

    _check(args)
    consistency = None if args.skip_consistency else ConsistencySettings(
        views=args.consistency_views, holdout=args.consistency_holdout, size=args.consistency_size,
        steps=args.consistency_steps, rays=args.consistency_rays, seed=args.seed)
    settings = EvalSettings(
        model=args.model, data=args.data, triplanes=args.triplanes, out=args.out, avatars=args.avatars,
        heldout=args.heldout, views=args.views, size=args.size, steps=args.steps, guidance=args.guidance,
        seed=args.seed, fid=not args.skip_fid, consistency=consistency, consistency_methods=args.consistency_methods,
        gt_triplanes=args.gt_triplanes, epipolar_frames=args.epipolar_frames, epipolar_sweep=args.epipolar_sweep,
        epipolar_row=args.epipolar_row, device=args.device)
    progress = _TqdmProgress()
    try:
        record = run_evaluation(settings, progress)
    finally:
        progress.close()
    print((args.out / "eval.md").read_text())
    print(f"wrote {args.out / 'eval.json'}, {args.out / 'eval.md'} and "
          f"{', '.join(record['epipolar']['files'].values())} in {record['timings']['total_s']:.0f} s")
    return 0


class _TqdmProgress:
    """training.eval.Progress on tqdm bars (one per stage), on stderr."""

    def __init__(self) -> None:
        self.bar = None

    def stage(self, name: str, total: int) -> None:
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=total, desc=name, unit="job", leave=True)

    def step(self, message: str = "") -> None:
        if self.bar is not None:
            self.bar.update(1)
            if message:
                self.bar.set_postfix_str(message, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
