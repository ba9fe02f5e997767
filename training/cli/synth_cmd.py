"""`rodinhd synth`: generate a multi-view dataset of procedural avatars."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from training.cli.common import int_arg
from training.synth.config import SynthConfig

OVERRIDES = ("count", "views", "test_views", "resolution", "seed", "workers", "gamut")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="generate procedural head-and-shoulders avatars (multi-view RGBA + cameras)",
        description="Generate procedural avatars: for each, training views on a 360° orbit (view 0 frontal), "
                    "held-out test views, portrait.png, transforms.json (NeRF-synthetic convention), "
                    "attributes.json and caption.txt. Same seed and options give byte-identical files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output dataset folder (must be empty unless "
                                                           "--overwrite or --resume)")
    p.add_argument("--preset", default="tiny", choices=sorted(SynthConfig.PRESETS),
                   help="named sizes: tiny = 64 views at 256², paper = 300 views at 1024²")
    p.add_argument("--count", type=int_arg, help="number of avatars (default 16)")
    p.add_argument("--views", type=int_arg, help="training views per avatar (default from the preset)")
    p.add_argument("--test-views", type=int_arg, help="held-out views per avatar (default from the preset)")
    p.add_argument("--resolution", type=int_arg, help="image size in pixels, multiple of 8, 32..1024")
    p.add_argument("--seed", type=int_arg, help="dataset seed (default 0)")
    p.add_argument("--workers", type=int_arg, help="parallel processes, each with its own GL context (default 1)")
    p.add_argument("--gamut", action="store_true", default=None,
                   help="the gamut probe: the seed's first avatars that together show every palette colour on "
                        "solid clothing and visible hair (--count is ignored)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    mode.add_argument("--resume", action="store_true", help="keep complete avatars in --out, generate the rest")
    p.set_defaults(handler=run)


def config_from_args(args) -> SynthConfig:
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    return SynthConfig.preset(args.preset, **overrides)


def run(args) -> int:
    from tqdm import tqdm

    from training.synth.writer import finish_index, generate, prepare_output

    config = config_from_args(args)
    out = args.out
    todo = prepare_output(config, out, overwrite=args.overwrite, resume=args.resume)
    total = len(config.indices())
    if len(todo) < total:
        print(f"resuming: {total - len(todo)} avatar(s) already complete, {len(todo)} to generate")
    start, images = time.perf_counter(), 0
    with tqdm(total=len(todo), unit="avatar", desc="synth") as bar:
        for _, rendered in generate(config, out, todo):
            images += rendered
            bar.update(1)
            bar.set_postfix(views_per_s=f"{images / (time.perf_counter() - start):.1f}")
    finish_index(config, out)
    print(f"wrote {total} avatar(s) to {out} ({images} images in {time.perf_counter() - start:.1f} s)")
    return 0
