"""Generation time of the shipped models on each available device, measured in one run (CPU is the baseline).

    .venv/bin/python benchmarks/device_speed.py [--steps 25] [--repeat 3]
Prints seconds per avatar (portrait → triplane, DDIM) and per 4 text candidates, and the speed-up over the CPU.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (allocations, kernels)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-text", action="store_true", help="time the avatar model only")
    args = ap.parse_args()
    from engine.pipeline import AvatarPipeline
    from engine.text import TextPortraitPipeline

    portrait = ROOT / "assets" / "portraits" / "astronaut.png"  # as is (no OpenCV face search)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = {}
    for device in devices:
        avatar = AvatarPipeline.from_pretrained(ROOT / "assets" / "models" / "default", device=device)
        rows[device] = (timed(lambda: avatar(portrait, steps=args.steps, seed=0), args.repeat), float("nan"))
        if not args.no_text:
            text = TextPortraitPipeline.from_pretrained(ROOT / "assets" / "models" / "text_default", device=device)
            rows[device] = (rows[device][0], timed(
                lambda: text("a man with red hair, wearing a blue t-shirt", n=4, steps=args.steps), args.repeat))
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "-"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, GPU: {name}, DDIM {args.steps}")
    for device, (a, t) in rows.items():
        print(f"{device:5s} avatar {a:7.3f} s ({rows['cpu'][0] / a:5.1f}× cpu)   4 text candidates {t:7.3f} s "
              f"({rows['cpu'][1] / t:5.1f}× cpu)")


if __name__ == "__main__":
    main()
