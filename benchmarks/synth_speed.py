"""Views per second of the procedural avatar generator on this machine.

Measures, in one run:
  - render only: the shipped renderer (2×2 supersampling) vs the baseline it replaced (4× MSAA), same scenes/cameras;
  - end to end (attributes → geometry → GL → PNG → files) with 1 worker and with 2 workers.

    .venv/bin/python benchmarks/synth_speed.py [--count 4] [--views 32] [--resolution 256]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from training.synth.attributes import sample_attributes
from training.synth.cameras import view_set
from training.synth.config import SynthConfig
from training.synth.gl_renderer import SceneRenderer
from training.synth.scene import build_scene
from training.synth.writer import avatar_seed, generate, prepare_output


def render_rate(config: SynthConfig, supersample: int, msaa: int) -> float:
    renderer = SceneRenderer(config.resolution, supersample=supersample, msaa=msaa)
    views = view_set(config, "train")
    elapsed, count = 0.0, 0
    for index in range(config.count):
        renderer.load(build_scene(sample_attributes(avatar_seed(config.seed, index))))
        renderer.render(views.frames[0].c2w, views.camera_angle_x)  # warm-up (shader JIT)
        start = time.perf_counter()
        for frame in views.frames:
            renderer.render(frame.c2w, views.camera_angle_x)
        elapsed += time.perf_counter() - start
        count += len(views.frames)
    renderer.release()
    return count / elapsed


def end_to_end_rate(config: SynthConfig) -> float:
    out = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        todo = prepare_output(config, out, overwrite=True, resume=False)
        start = time.perf_counter()
        images = sum(n for _, n in generate(config, out, todo))
        return images / (time.perf_counter() - start)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--views", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    config = SynthConfig(count=args.count, views=args.views, test_views=0, resolution=args.resolution, seed=1)
    print(f"{args.count} avatars × {args.views} views at {args.resolution}²")
    ssaa = render_rate(config, supersample=2, msaa=0)
    msaa = render_rate(config, supersample=1, msaa=4)
    print(f"render only, 2×2 supersampling (shipped): {ssaa:6.1f} views/s")
    print(f"render only, 4× MSAA (baseline):          {msaa:6.1f} views/s   ratio {ssaa / msaa:.2f}×")
    one = end_to_end_rate(config.replace(workers=1))
    two = end_to_end_rate(config.replace(workers=2))
    print(f"end to end, 1 worker:                     {one:6.1f} views/s")
    print(f"end to end, 2 workers:                    {two:6.1f} views/s   ratio {two / one:.2f}×")


if __name__ == "__main__":
    main()
