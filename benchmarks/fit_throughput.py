"""Stage-2 throughput: the per-avatar fitter against the batched one, on the same avatars in one run.

Every mode is a real `rodinhd fit --stage 2` run (loading, fitting, the held-out score and the writes) into a
temporary folder; avatars/hour counts wall time over the whole run. Modes:

- per-avatar: `--batch-avatars 1`, noise start (the path every run used before the batched fitter);
- batched: `--batch-avatars K`, noise start — what batching alone buys;
- batched + warm: also `--warm-start` (the mean triplane of the decoder's stage-1 run);
- batched + warm + early stop: also `stage2_plateau_db` (a slot is refilled once its probe PSNR stops rising).

    .venv/bin/python benchmarks/fit_throughput.py --data DIR [--avatars 8] [--steps 300] [--batch 8]
        [--decoder assets/decoders/colour_path_cover64_seed11] [--warm-start FILE_OR_FOLDER] [--plateau 0.1]
        [--modes per-avatar,batched,warm,early] [--batched-steps 450]

Without --data, 8 avatars of `rodinhd synth --seed 23` (64 views at 256², 8 test views) are made first.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from training.cli.main import main as rodinhd

ROOT = Path(__file__).resolve().parents[1]
DECODER = ROOT / "assets" / "decoders" / "colour_path_cover64_seed11"
MODES = ("per-avatar", "batched", "warm", "early")


def mode_args(mode: str, batch: int, warm: str, plateau: float) -> list[str]:
    if mode == "per-avatar":
        return ["--batch-avatars", "1"]
    args = ["--batch-avatars", str(batch)]
    if mode in ("warm", "early"):
        args += ["--warm-start", warm]
    if mode == "early":
        args += ["--set", f"stage2_plateau_db={plateau}"]
    return args


def run_mode(mode: str, args, work: Path) -> dict:
    out = work / mode
    steps = args.steps if mode == "per-avatar" else args.batched_steps or args.steps
    command = ["fit", "--stage", "2", "--decoder", str(args.decoder), "--data", str(args.data), "--out", str(out),
               "--avatars", str(args.avatars), "--steps", str(steps), "--set", "rays_per_step=2048",
               *mode_args(mode, args.batch, args.warm_start, args.plateau)]
    start = time.perf_counter()
    if rodinhd(command) != 0:
        raise SystemExit(f"{mode}: the fit failed")
    seconds = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())
    steps = [r["steps"] for r in results["per_avatar"]]
    return {"mode": mode, "seconds": seconds, "avatars_per_hour": 3600 * results["fitted"] / seconds,
            "psnr": results["mean_psnr"], "ssim": results["mean_ssim"], "mean_steps": sum(steps) / len(steps)}


def synth_data(work: Path, count: int) -> Path:
    data = work / "data"
    rodinhd(["synth", "--out", str(data), "--count", str(count), "--seed", "23", "--views", "64",
             "--test-views", "8", "--resolution", "256"])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--decoder", type=Path, default=DECODER)
    parser.add_argument("--warm-start", default=str(DECODER / "warm_start.safetensors"))
    parser.add_argument("--avatars", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batched-steps", type=int, help="step budget of the batched modes (default: --steps); "
                        "e.g. the budget a warm start affords in the per-avatar path's time")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--plateau", type=float, default=0.1)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := sorted(set(modes) - set(MODES)):
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    with tempfile.TemporaryDirectory(prefix="fit-throughput-") as tmp:
        work = Path(tmp)
        args.data = args.data or synth_data(work, args.avatars)
        rows = [run_mode(mode, args, work) for mode in modes]
    base = rows[0]
    print(f"\nstage 2, {args.avatars} avatars, {args.steps} steps per avatar (batched modes at most "
          f"{args.batched_steps or args.steps}), 2048 rays, threads {torch.get_num_threads()}, batch {args.batch}")
    print("| mode | avatars/hour | × first | mean steps | held-out PSNR | Δ dB | SSIM |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['avatars_per_hour']:.0f} | {row['avatars_per_hour'] / base['avatars_per_hour']:.2f} "
              f"| {row['mean_steps']:.0f} | {row['psnr']:.2f} | {row['psnr'] - base['psnr']:+.2f} | {row['ssim']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
