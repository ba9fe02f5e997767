"""Speed of one fitting step (fwd + bwd + Adam) and of a 256² render, on this machine.

Baseline, measured in the same run: the straightforward renderer — every one of the 64 stratified samples of
every ray goes through the triplane and the MLP. Ours: the same step with the occupancy grid carved from the
avatar's alpha masks, so only samples inside the visual hull reach the MLP. "Effective samples/s" counts all
rays × 64 samples in both cases (the work the step stands for).

    .venv/bin/python benchmarks/fit_step.py [--data DIR] [--steps 10] [--paper]

`--paper` also builds the paper preset (3×32×512² triplane, paper decoder, 8192 rays × (128 + 64) samples, 1024²
views) and runs one step, printing its time and peak memory.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.render import render_image
from engine.triplane import init_triplane
from training.cli.main import main as rodinhd
from training.data.format import avatar_dirs
from training.fit.config import FitConfig
from training.fit.data import RaySampler, load_views
from training.fit.step import decoder_optimizer, fit_step, triplane_optimizer


def make_data(resolution: int, views: int) -> Path:
    out = Path(tempfile.mkdtemp(prefix="fit-bench-")) / "data"
    rodinhd(["synth", "--out", str(out), "--count", "1", "--views", str(views), "--test-views", "0",
             "--resolution", str(resolution), "--seed", "3"])
    return out


def time_steps(config: FitConfig, folder: Path, occupancy_size: int, steps: int) -> tuple[float, int, float]:
    """Median seconds per step, samples evaluated in the last step, and seconds for one 256² render."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    views = load_views(folder).to(config.device)
    occupancy = views.occupancy(occupancy_size) if occupancy_size else None
    decoder = TriplaneDecoder(config.decoder).to(config.device)
    planes = torch.nn.Parameter(init_triplane(config.channels, config.triplane_resolution, generator=generator,
                                              device=config.device))
    optimizers = [triplane_optimizer(planes, config.triplane_lr), decoder_optimizer(decoder, config.decoder_lr)]
    sampler = RaySampler(views, generator)
    fit_step(planes, decoder, sampler, occupancy, config, optimizers, generator)  # warm-up
    times, evaluated = [], 0
    for _ in range(steps):
        start = time.perf_counter()
        result = fit_step(planes, decoder, sampler, occupancy, config, optimizers, generator)
        times.append(time.perf_counter() - start)
        evaluated = result.evaluated
    render_start = time.perf_counter()
    render_image(planes.detach(), decoder, views.c2w[0], views.camera_angle_x, 256, 256, config.render, occupancy)
    times.sort()
    return times[len(times) // 2], evaluated, time.perf_counter() - render_start


def tiny_benchmark(folder: Path, steps: int) -> None:
    # the reference setting of DESIGN.md: 3×32×128² triplane, MLP ~32→64→64, 4096 rays × 64 samples
    config = FitConfig.preset("tiny").replace(
        decoder=DecoderConfig(channels=32, hidden=64, geo_features=32), triplane_resolution=128, rays_per_step=4096)
    work = config.rays_per_step * config.render.samples
    base_t, base_n, base_r = time_steps(config, folder, 0, steps)
    ours_t, ours_n, ours_r = time_steps(config, folder, config.occupancy_size, steps)
    print(f"step, 4096 rays × 64 samples, 3×32×128², threads {torch.get_num_threads()}")
    print(f"  baseline (every sample):      {base_t:.3f} s/step  {work / base_t / 1e6:5.2f} M samples/s  "
          f"MLP evaluations {base_n}")
    print(f"  occupancy grid (ours):        {ours_t:.3f} s/step  {work / ours_t / 1e6:5.2f} M samples/s  "
          f"MLP evaluations {ours_n}   speed-up {base_t / ours_t:.2f}×")
    print(f"  render 256²: baseline {base_r:.2f} s, ours {ours_r:.2f} s")


def paper_benchmark(device: str) -> None:
    folder = avatar_dirs(make_data(1024, 4))[0]
    config = FitConfig.preset("paper").replace(device=device)
    torch.manual_seed(0)
    start = time.perf_counter()
    seconds, evaluated, render = time_steps(config, folder, config.occupancy_size, 1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f", GPU peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.startswith("cuda") else ""
    print(f"paper preset on {device}: one step {seconds:.2f} s ({evaluated} MLP evaluations), 256² render "
          f"{render:.2f} s, process peak RSS {peak_mb:.0f} MB{gpu}, total {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a dataset (default: generate one avatar at 256²)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--paper", action="store_true", help="also run one step of the paper preset")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    folder = avatar_dirs(args.data or make_data(256, 32))[0]
    tiny_benchmark(folder, args.steps)
    if args.paper:
        paper_benchmark(args.device)


if __name__ == "__main__":
    main()
