"""`rodinhd fit --stage 1|2`: triplane fitting (stage 1: shared decoder with task replay + IWC; stage 2: one
triplane per avatar with the decoder frozen)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from engine.errors import UserError
from training.cli.common import int_arg
from training.cli.overrides import apply_overrides, parse_overrides
from training.fit.config import FitConfig


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=sorted(FitConfig.PRESETS), help="named sizes")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:1 … (default: the preset's)")
    p.add_argument("--set", dest="overrides", action="append", metavar="FIELD=VALUE",
                   help="override any FitConfig field, e.g. --set tv_weight=1e-3 --set decoder.hidden=64 "
                        "(repeatable; see the config.json a run writes for every field)")


def config_from_args(args, **fields) -> FitConfig:
    config = FitConfig.preset(args.preset)
    changes = {k: v for k, v in fields.items() if v is not None}
    if args.device:
        changes["device"] = args.device
    config = config.replace(**changes) if changes else config
    return apply_overrides(config, parse_overrides(args.overrides))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit", help="fit triplanes: stage 1 (shared decoder) or stage 2 (per-avatar, decoder frozen)",
        description="Stage 1: rodinhd fit --stage 1 --data DIR --out RUN [--avatars K] [--mode replay_iwc]. "
                    "Stage 2: rodinhd fit --stage 2 --decoder RUN --data DIR --out DIR [--workers W]. "
                    "Under torchrun, stage 2 shards avatars across processes (gloo on CPU, nccl on GPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--stage", type=int_arg, required=True, choices=(1, 2), help="fitting stage")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (rodinhd synth / data import)")
    p.add_argument("--out", type=Path, required=True, help="run folder to create (or continue with --resume)")
    p.add_argument("--decoder", type=Path, help="stage 2: a stage-1 run folder (or a decoder folder)")
    p.add_argument("--avatars", type=int_arg, help="use K avatars of the dataset (default: all)")
    p.add_argument("--select", choices=("first", "cover"), default="first",
                   help="stage 1: which K avatars — the first K, or K that cover the synthetic palette, patterns "
                        "and hairstyles (needs attributes.json)")
    p.add_argument("--pool", type=int_arg, help="stage 1: choose only among the first N avatars (keep held-out "
                                                "avatars out of the decoder)")
    p.add_argument("--mode", choices=("naive", "replay", "replay_iwc"), help="stage-1 schedule")
    p.add_argument("--epochs", type=int_arg, help="stage 1: passes over all avatars (task replay)")
    p.add_argument("--inner-steps", type=int_arg, help="stage 1: steps per visit")
    p.add_argument("--steps", type=int_arg, help="stage 2: steps per avatar")
    p.add_argument("--only", action="append", metavar="AVATAR", help="stage 2: fit only these avatars (repeatable)")
    p.add_argument("--workers", type=int_arg, default=1, help="stage 2: local worker processes")
    p.add_argument("--batch-avatars", type=int_arg, help="stage 2: avatars fitted at once, their rays decoded in "
                                                         "one pass (1 = one at a time; default: the config's)")
    p.add_argument("--warm-start", help="stage 2: start every fit from the mean of these triplanes (a file, or a "
                                        "folder such as a stage-1 run's triplanes/, fitted with the same decoder)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    add_config_options(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.avatars is not None and args.avatars < 1:
        raise UserError(f"--avatars must be at least 1 (got {args.avatars})")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    if args.stage == 1 and (args.batch_avatars or args.warm_start):
        raise UserError("--batch-avatars and --warm-start belong to stage 2")
    config = config_from_args(args, mode=args.mode, epochs=args.epochs, inner_steps=args.inner_steps,
                              stage2_steps=args.steps, batch_avatars=args.batch_avatars,
                              stage2_warm_start=args.warm_start)
    if args.stage == 1:
        from training.fit.stage1_run import run_stage1

        result = run_stage1(args.data, args.out, config, args.avatars, args.resume, select=args.select,
                            pool=args.pool)
        if result is None:
            print(f"stage 1 stopped; continue with: rodinhd fit --stage 1 ... --out {args.out} --resume")
        else:
            print(f"stage 1 done: mean held-out PSNR {result['mean']['psnr']:.2f} dB over "
                  f"{len(result['per_avatar'])} avatars; decoder in {args.out / 'decoder'}")
        return 0
    if args.decoder is None:
        raise UserError("--stage 2 needs --decoder (a stage-1 run folder)")
    from training.fit.colour import REPORT_FILE, summary_line
    from training.fit.stage2_run import run_stage2

    results = run_stage2(args.decoder, args.data, args.out, config, args.avatars, args.workers, args.resume,
                         args.only)
    if results and os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line
        mean = sum(r["psnr"] for r in results) / len(results)
        colour = args.out / REPORT_FILE
        if colour.is_file():
            print(summary_line(json.loads(colour.read_text())))
        print(f"stage 2: {len(results)} triplane(s) in {args.out / 'triplanes'}; mean held-out PSNR {mean:.2f} dB")
    return 0
