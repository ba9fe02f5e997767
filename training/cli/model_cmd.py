"""`rodinhd model build|info`: assemble trained stages into a model folder the pipeline loads, and describe one."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.errors import UserError
from engine.io import read_json


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="assemble a model folder from trained runs, or describe one",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="base run (+ upsample run) + decoder → model folder",
                           description="rodinhd model build --base RUN [--upsample RUN] --out MODEL. The decoder "
                                       "comes from the fit run the base was trained on (or --decoder).")
    build.add_argument("--base", type=Path, required=True, help="finished `rodinhd train --stage base` run")
    build.add_argument("--upsample", type=Path, help="finished `rodinhd train --stage upsample` run")
    build.add_argument("--decoder", type=Path, help="decoder folder or fit run (default: from the base run)")
    build.add_argument("--out", type=Path, required=True, help="model folder to write (must not exist)")
    build.add_argument("--half", action="store_true", help="store the diffusion weights in fp16 (half the size)")
    build.set_defaults(handler=run_build)
    info = sub.add_parser("info", help="print a model folder's components")
    info.add_argument("model", type=Path)
    info.set_defaults(handler=run_info)


def _training_info(run: Path, role: str) -> dict:
    from training.diffusion.trainer import TRAINING_INFO

    path = run / TRAINING_INFO
    if not path.is_file() or not (run / role).is_dir():
        raise UserError(f"{run}: not a finished `rodinhd train --stage {role}` run (no {TRAINING_INFO} / {role}/)")
    info = read_json(path)
    if info.get("role") != role:
        raise UserError(f"{run}: a {info.get('role')} run, not {role}")
    return info


def run_build(args) -> int:
    from engine.decoder import decoder_hash
    from engine.diffusion.model import DiffusionStage
    from engine.encoders import load_encoder
    from engine.pipeline import AvatarPipeline
    from engine.weights import state_hash
    from training.diffusion.dataset import fit_decoder

    if args.out.exists() and any(args.out.iterdir()):
        raise UserError(f"--out {args.out} exists and is not empty")
    base_info = _training_info(args.base, "base")
    decoder = fit_decoder(args.decoder or Path(base_info["triplanes"]))
    if decoder_hash(decoder) != base_info["decoder_hash"]:
        raise UserError(f"the decoder ({decoder_hash(decoder)}) is not the one the base was trained with "
                        f"({base_info['decoder_hash']})")
    encoder = load_encoder(args.base / "encoder")
    upsample, parts = None, {"base": str(args.base)}
    if args.upsample:
        up_info = _training_info(args.upsample, "upsample")
        if up_info["decoder_hash"] != base_info["decoder_hash"]:
            raise UserError("base and upsample were trained on triplanes of different decoders")
        if state_hash(load_encoder(args.upsample / "encoder").state_dict()) != state_hash(encoder.state_dict()):
            raise UserError("base and upsample were trained with different portrait encoders")
        upsample = DiffusionStage.load(args.upsample / "upsample")
        parts["upsample"] = str(args.upsample)
    pipeline = AvatarPipeline(decoder, encoder, DiffusionStage.load(args.base / "base"), upsample)
    pipeline.save_pretrained(args.out, {"trained_from": parts, "training_avatars": base_info["avatars"],
                                        "weights_dtype": "float16" if args.half else "float32"}, half=args.half)
    print(f"model in {args.out} (hash {AvatarPipeline.from_pretrained(args.out).model_hash()})")  # as loaded
    return 0


def run_info(args) -> int:
    from engine.pipeline import AvatarPipeline

    pipe = AvatarPipeline.from_pretrained(args.model)
    from engine.diffusion.model import describe

    report = {"model": str(args.model), "hash": pipe.model_hash(), "decoder": pipe.decoder.config.to_dict(),
              "encoder": pipe.encoder.config.to_dict(), "base": describe(pipe.base),
              "upsample": describe(pipe.upsample) if pipe.upsample else None}
    print(json.dumps(report, indent=2))
    return 0
