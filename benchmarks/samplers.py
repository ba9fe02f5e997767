"""Portrait → avatar: speed and quality of the samplers, measured together.

For each sampler setting, every held-out portrait is turned into an avatar (same seeds for every setting) and
its held-out test views are rendered and compared with the ground truth (PSNR / SSIM). Baseline, measured in
the same run: DDPM with all 1000 steps. Prints a table with the speed-up and the PSNR change against it.

    .venv/bin/python benchmarks/samplers.py --model MODEL --data DATASET --avatars avatar_00100 avatar_00101
        [--stages base|cascade] [--views 4] [--size 128] [--settings ddpm:1000 ddim:10 ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from engine.pipeline import AvatarPipeline
from training.diffusion.evaluate import evaluate_methods

DEFAULT_SETTINGS = ["ddpm:1000", "ddim:10", "ddim:20", "ddim:50", "dpmsolver++:10", "dpmsolver++:20",
                    "dpmsolver++:50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--avatars", nargs="+", required=True, help="held-out avatars of --data")
    parser.add_argument("--stages", choices=("base", "cascade"), default="cascade")
    parser.add_argument("--guidance", type=float, default=1.3)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="sampler:steps, baseline first")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = AvatarPipeline.from_pretrained(args.model)

    def method(sampler: str, steps: int):
        return lambda portrait, seed: pipe(portrait, guidance=args.guidance, steps=steps, sampler=sampler,
                                           seed=seed, stages=args.stages).planes

    methods = {s: method(s.split(":")[0], int(s.split(":")[1])) for s in args.settings}
    results = evaluate_methods(methods, args.data, args.avatars, pipe.decoder, args.views, args.size,
                               progress=print)
    base = results[args.settings[0]]["mean"]
    print(f"\n{len(args.avatars)} held-out avatars, {args.views} test views at {args.size}², stages={args.stages}, "
          f"guidance {args.guidance}, {torch.get_num_threads()} threads")
    print(f"| sampler:steps | s / avatar | speed-up vs {args.settings[0]} | PSNR | ΔPSNR | SSIM |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        m = result["mean"]
        print(f"| {name} | {m['seconds']:.2f} | {base['seconds'] / m['seconds']:.1f}× | {m['psnr']:.2f} | "
              f"{m['psnr'] - base['psnr']:+.2f} | {m['ssim']:.3f} |")


if __name__ == "__main__":
    main()
