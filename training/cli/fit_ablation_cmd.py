"""`rodinhd fit-ablation`: Table 4a and Fig. 2 on our data."""
from __future__ import annotations

import argparse
from pathlib import Path

from training.cli.common import int_arg
from training.cli.fit_cmd import add_config_options, config_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit-ablation", help="naive vs task replay vs task replay + IWC (Table 4a) and forgetting curves (Fig. 2)",
        description="Runs stage 1 three times on the same avatars and step budget, then writes OUT/ablation.md "
                    "(PSNR, SSIM, perceptual substitute on held-out views), OUT/ablation.json and "
                    "OUT/forgetting.png.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the three runs and the report")
    p.add_argument("--avatars", type=int_arg, help="use the first K avatars (default: all)")
    p.add_argument("--epochs", type=int_arg, help="task-replay passes (naive: one visit of epochs×inner steps)")
    p.add_argument("--inner-steps", type=int_arg, help="steps per visit")
    p.add_argument("--resume", action="store_true", help="keep finished modes, continue an interrupted one")
    add_config_options(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.fit.ablation import run_ablation

    config = config_from_args(args, epochs=args.epochs, inner_steps=args.inner_steps)
    run_ablation(args.data, args.out, config, args.avatars, args.resume)
    print((args.out / "ablation.md").read_text())
    print(f"forgetting plot: {args.out / 'forgetting.png'}")
    return 0
