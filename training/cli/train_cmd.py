"""`rodinhd train --stage vae|base|upsample|text|lora`: train the portrait VAE, one stage of the cascaded triplane
diffusion model (resumable; DDP under torchrun), the text → portrait model (`text`, into OUT/model) or a LoRA of it
(`lora`, into OUT/lora.safetensors)."""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from engine.errors import UserError
from training.cli.common import int_arg
from training.cli.overrides import apply_overrides, parse_overrides

STAGES = ("vae", "base", "upsample", "text", "lora")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the portrait VAE or a diffusion stage (base / upsample)",
        description="rodinhd train --stage base --data DATASET --triplanes FIT_RUN --out RUN. "
                    "--triplanes is a `rodinhd fit` run folder (stage 2, or stage 1) fitted on --data; "
                    "`rodinhd model build` assembles trained stages into a model folder. "
                    "Under torchrun the diffusion stages train with DDP (gloo on CPU, nccl on GPU). "
                    "--stage text --data DATASET --out RUN [--model-out FOLDER]: text → portrait model; "
                    "--stage lora --base MODEL --data DATASET --out RUN [--trigger PHRASE]: LoRA finetune.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--stage", choices=STAGES, help="what to train (or --recipe)")
    p.add_argument("--recipe", choices=("default", "smoke"),
                   help="train a whole model from nothing: synth → fit 1 → fit 2 → base → upsample → build → text "
                        "(resumable: run it again to continue); needs only --out")
    p.add_argument("--data", type=Path, help="dataset folder (portraits and views)")
    p.add_argument("--triplanes", type=Path, help="base/upsample: fit run folder with triplanes/ and decoder/")
    p.add_argument("--out", type=Path, required=True, help="run folder to create (or continue with --resume)")
    p.add_argument("--preset", default="tiny", choices=("tiny", "paper"), help="named sizes")
    p.add_argument("--steps", type=int_arg, help="optimiser steps (default: the preset's)")
    p.add_argument("--batch", type=int_arg, help="batch size per process")
    p.add_argument("--encoder", help="base/upsample: mobilenet_v2 or an encoder folder (e.g. VAE_RUN/encoder)")
    p.add_argument("--avatars", type=int_arg, help="train on the first K avatars only")
    p.add_argument("--exclude", action="append", default=[], metavar="AVATAR",
                   help="leave this avatar out (held out for evaluation; repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:1 …")
    p.add_argument("--base", type=Path, help="lora: the text model folder to finetune (e.g. assets/models/text_default)")
    p.add_argument("--trigger", help="lora: trigger phrase put in front of every caption")
    p.add_argument("--model-out", type=Path, help="text: also copy the trained model folder here; recipe: copy the "
                   "avatar model here when done (e.g. assets/models/default)")
    p.add_argument("--text-model-out", type=Path, help="recipe: copy the text model here when done")
    p.add_argument("--no-text", action="store_true", help="recipe: skip the text → portrait model")
    p.add_argument("--workers", type=int_arg, default=1, help="recipe: processes for synth and fit stage 2")
    p.add_argument("--jobs", type=int_arg, default=1, help="recipe: steps run at the same time when they do not "
                   "need each other (base and upsample, text and avatar chains)")
    p.add_argument("--plan", action="store_true", help="recipe: print the steps and exit")
    p.add_argument("--set", dest="overrides", action="append", metavar="FIELD=VALUE",
                   help="override any config field, e.g. --set lr=1e-4 --set stage.unet.model_channels=32")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.recipe:
        return _recipe(args)
    if args.stage is None or args.data is None:
        raise UserError("rodinhd train needs --stage and --data (or --recipe NAME --out DIR)")
    if args.avatars is not None and args.avatars < 1:
        raise UserError(f"--avatars must be at least 1 (got {args.avatars})")
    if not args.data.is_dir():
        raise UserError(f"--data {args.data}: no such dataset folder")
    if args.stage == "vae":
        return _train_vae(args)
    if args.stage in ("text", "lora"):
        return _train_text(args)
    if args.triplanes is None:
        raise UserError(f"--stage {args.stage} needs --triplanes (a `rodinhd fit` run folder)")
    from training.diffusion.config import DiffusionTrainConfig
    from training.diffusion.trainer import train_stage

    changes = {"steps": args.steps, "batch_size": args.batch, "encoder": args.encoder, "device": args.device}
    config = DiffusionTrainConfig.for_stage(args.stage, args.preset,
                                            **{k: v for k, v in changes.items() if v is not None})
    config = apply_overrides(config, parse_overrides(args.overrides))
    info = train_stage(args.data, args.triplanes, args.out, config, args.resume, args.avatars, tuple(args.exclude))
    if os.environ.get("RANK", "0") == "0":
        if info is None:
            print(f"stopped; continue with: rodinhd train --stage {args.stage} ... --out {args.out} --resume")
        else:
            final = info.get("final") or {}
            print(f"{args.stage}: {info['steps']} steps on {len(info['avatars'])} avatars, final loss "
                  f"{final.get('loss', float('nan')):.4f}; weights in {args.out / args.stage}")
    return 0


def _train_vae(args) -> int:
    from training.vae.config import VAEConfig
    from training.vae.train import train_vae

    config = VAEConfig.preset(args.preset)
    changes = {"steps": args.steps, "batch_size": args.batch, "device": args.device}
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    config = apply_overrides(config, parse_overrides(args.overrides))
    result = train_vae(args.data, args.out, config, args.resume, args.avatars)
    if result is None:
        print(f"stopped; continue with: rodinhd train --stage vae ... --out {args.out} --resume")
    else:
        print(f"vae: {result['steps']} steps; held-out reconstruction PSNR {result['psnr']:.2f} dB; "
              f"encoder in {args.out / 'encoder'}")
    return 0


def _train_text(args) -> int:
    """--stage text: text → portrait UNet into OUT/model; --stage lora: a LoRA of --base into OUT/lora.safetensors."""
    if args.stage == "lora":
        from training.text.lora import LoraTrainConfig, train_lora

        if args.base is None:
            raise UserError("--stage lora needs --base (a text model folder)")
        config = LoraTrainConfig(**{k: v for k, v in {"steps": args.steps, "batch_size": args.batch,
                                                       "trigger": args.trigger}.items() if v is not None})
        config = apply_overrides(config, parse_overrides(args.overrides))
        info = train_lora(args.base, args.data, args.out, config, limit=args.avatars)
        print(f"lora: {info['steps']} steps on {info['images']} images, loss {info['first_loss']:.4f} → "
              f"{info['final_loss']:.4f}; adapter in {info['path']}")
        return 0
    import shutil

    from training.text.train import TextTrainConfig, train_text

    config = TextTrainConfig.preset(args.preset if args.preset != "paper" else "tiny")
    changes = {"steps": args.steps, "batch_size": args.batch, "device": args.device,
               "exclude_ids": tuple(args.exclude) or None}
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    config = apply_overrides(config, parse_overrides(args.overrides))
    info = train_text([args.data], args.out, config, resume=args.resume)
    if info is None:
        print(f"stopped; continue with: rodinhd train --stage text ... --out {args.out} --resume")
        return 0
    if args.model_out is not None:
        shutil.rmtree(args.model_out, ignore_errors=True)
        shutil.copytree(args.out / "model", args.model_out)
    print(f"text: {info['steps']} steps on {info['avatars']} portraits; model in "
          f"{args.model_out or args.out / 'model'}")
    return 0


def _recipe(args) -> int:
    """--recipe NAME --out DIR: the whole chain (training/recipe.py), resumable; --plan lists it."""
    from training.recipe import install, recipe_steps, run_recipe

    if args.stage or args.data:
        raise UserError("--recipe makes its own data and stages: drop --stage/--data")
    if args.workers < 1 or args.jobs < 1:
        raise UserError(f"--workers and --jobs must be at least 1 (got {args.workers}, {args.jobs})")
    if args.plan:
        for i, step in enumerate(recipe_steps(args.recipe, args.out, args.device, args.workers, not args.no_text), 1):
            after = f" after {', '.join(step.after)}" if step.after else ""
            print(f"{i}. {step.name} (~{step.minutes:g} CPU-min{after}): rodinhd {shlex.join(step.argv)}")  # copy-pastable
        return 0
    state = run_recipe(args.recipe, args.out, args.device, args.workers, not args.no_text, jobs=args.jobs)
    install(args.out, args.model_out, None if args.no_text else args.text_model_out)
    minutes = sum(state["done"].values()) / 60
    print(f"recipe {args.recipe}: finished ({minutes:.1f} min of steps); model in {args.model_out or args.out / 'model'}")
    return 0
