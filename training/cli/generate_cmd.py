"""`rodinhd generate`: portrait(s) → avatar(s) with a trained model, or unconditional samples. Each avatar gets a
folder with avatar.safetensors, avatar.json (settings, hashes, timings, preprocessing), input.png (the portrait as
the model saw it), front.png and a turntable. Photos are first brought to the training framing
(engine.preprocess: face detection, roll from the eyes, crop, background matte) unless --preprocess off.

`--prompt TEXT` makes the portrait first with a text → portrait model (engine.text; `--text-model`, `--lora`,
`--candidates N`, `--pick K`): the picked candidate is already in the training framing, so it goes to the avatar
model as it is (no preprocessing); the folder also gets portrait.png (and candidate_XX.png when N > 1)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.errors import UserError
from training.cli.common import int_arg
from training.cli.text2portrait_cmd import add_text_model_args

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "default"


def register(subparsers) -> None:
    from engine.diffusion.sampling import SAMPLERS
    from engine.pipeline import DEFAULT_GUIDANCE, DEFAULT_STEPS, STAGES

    p = subparsers.add_parser(
        "generate", help="portrait → 3D avatar (or unconditional avatars) with a trained model",
        description="rodinhd generate PORTRAIT... --model MODEL --out DIR, rodinhd generate --prompt TEXT --out DIR, "
                    "or rodinhd generate --unconditional N --out DIR",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("portraits", nargs="*", type=Path, help="portrait images (PNG, JPEG, WebP, …)")
    p.add_argument("--unconditional", type=int_arg, metavar="N", help="make N avatars without a portrait")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (rodinhd model build)")
    p.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per avatar)")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="classifier-free guidance scale")
    p.add_argument("--steps", type=int_arg, default=DEFAULT_STEPS, help="sampling steps per stage")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim", help="diffusers scheduler")
    p.add_argument("--seed", type=int_arg, default=0, help="random seed (unconditional: first of N seeds)")
    p.add_argument("--stages", choices=STAGES, default="cascade", help="base only, or base + upsample")
    p.add_argument("--resolution", type=int_arg, default=256, help="render size of front.png and the turntable")
    p.add_argument("--turntable", type=int_arg, default=36, help="turntable frames (0 = none)")
    p.add_argument("--format", choices=("gif", "mp4"), default="gif", help="turntable container")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--preprocess", choices=("auto", "off"), default="auto",
                   help="auto: find the face, turn it upright, crop it like the training portraits and remove the "
                        "background; off: the centre square of the photo as it is")
    p.add_argument("--crop", metavar="X,Y,SIZE", help="square to cut, in the photo's pixels (top-left corner and "
                   "side): replaces face detection; one portrait only")
    t = p.add_argument_group("text → portrait (--prompt)")
    t.add_argument("--prompt", metavar="TEXT", help="describe the person: a portrait is generated from it first")
    add_text_model_args(t, "--text-model")
    t.add_argument("--candidates", type=int_arg, default=1, help="portrait candidates to sample (1–16; candidate "
                   "i uses seed+i)")
    t.add_argument("--pick", type=int_arg, default=0, help="which candidate (0-based) becomes the avatar")
    t.add_argument("--text-steps", type=int_arg, default=25, help="text → portrait sampling steps")
    t.add_argument("--text-guidance", type=float, help="text → portrait guidance scale (default: the text model's)")
    p.set_defaults(handler=run)


def _jobs(args) -> list[tuple[str, Path | None, int]]:
    """(folder name, portrait or None, seed) per avatar; names stay unique."""
    if args.unconditional is not None and args.portraits:
        raise UserError("give portraits or --unconditional N, not both")
    if args.unconditional is not None:
        if args.unconditional < 1:
            raise UserError(f"--unconditional must be at least 1 (got {args.unconditional})")
        return [(f"unconditional_{args.seed + i:05d}", None, args.seed + i) for i in range(args.unconditional)]
    if not args.portraits:
        raise UserError("give at least one portrait image, --unconditional N or --prompt TEXT")
    jobs, used = [], set()
    for path in args.portraits:
        name = path.stem or "portrait"
        while name in used:
            name += "_"
        used.add(name)
        jobs.append((name, path, args.seed))
    return jobs


def run(args) -> int:
    from tqdm import tqdm

    from engine.pipeline import AvatarPipeline
    from engine.portrait import portrait_hash

    if not 16 <= args.resolution <= 2048:
        raise UserError(f"--resolution must be between 16 and 2048 (got {args.resolution})")
    if args.turntable < 0:
        raise UserError(f"--turntable must be ≥ 0 (got {args.turntable})")
    if args.prompt is not None:
        if args.portraits or args.unconditional is not None:
            raise UserError("give portraits, --unconditional N or --prompt TEXT: only one of them")
        return _run_prompt(args)
    jobs = _jobs(args)
    for _, portrait, _ in jobs:
        if portrait is not None and not portrait.is_file():
            raise UserError(f"{portrait}: no such portrait file")
    prepared = _prepare_all(jobs, args)  # every photo is checked before minutes of sampling start
    pipe = AvatarPipeline.from_pretrained(args.model, args.device)
    for name, portrait, seed in tqdm(jobs, unit="avatar", desc="generate", disable=len(jobs) == 1):
        settings = dict(steps=args.steps, sampler=args.sampler, seed=seed, stages=args.stages)
        if portrait is None:
            avatar = pipe.unconditional(**settings)
        else:
            avatar = pipe(prepared[name].image, guidance=args.guidance, **settings)
            # the source file identifies the input (as before preprocessing existed); input.png shows what was used
            avatar.metadata.update(input=str(portrait), input_hash=portrait_hash(portrait)[:16],
                                   preprocess=prepared[name].record())
        folder = args.out / name
        _write_outputs(avatar, folder, args, prepared.get(name))
        print(f"{folder}: {avatar.metadata['timings']['total_s']:.1f} s")
    return 0


def _slug(text: str, limit: int = 40) -> str:
    import re

    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit].rstrip("_")
    return slug or "prompt"


def _run_prompt(args) -> int:
    """--prompt: text → portrait candidates → the picked one → avatar (no preprocessing: already framed)."""
    import numpy as np

    from engine.io import atomic_write
    from engine.pipeline import AvatarPipeline
    from engine.portrait import portrait_hash
    from engine.preprocess import prepare_portrait
    from training.cli.text2portrait_cmd import load_text_pipeline, sample_candidates

    prompt = args.prompt.strip()
    if not prompt:
        raise UserError('--prompt is empty: describe the person, e.g. "a woman with short red hair and glasses"')
    if args.crop is not None:
        raise UserError("--crop is for photos; a generated portrait is already framed")
    if not 1 <= args.candidates <= 16:
        raise UserError(f"--candidates must be between 1 and 16 (got {args.candidates})")
    if not 0 <= args.pick < args.candidates:
        raise UserError(f"--pick must be between 0 and {args.candidates - 1} (the candidates are numbered from 0; "
                        f"got {args.pick})")
    text = load_text_pipeline(args.text_model, args.device, args.lora, args.lora_scale, flag="--text-model")
    pipe = AvatarPipeline.from_pretrained(args.model, args.device)  # both load before any sampling
    started = time.perf_counter()
    images, record = sample_candidates(text, prompt, negative=args.negative, n=args.candidates,
                                       steps=args.text_steps, guidance=args.text_guidance, seed=args.seed,
                                       add_trigger=args.add_trigger, desc="portrait")
    text_s = time.perf_counter() - started
    portrait = images[args.pick]
    prepared = prepare_portrait(portrait, detect=False, align=False, matte=False)
    avatar = pipe(prepared.image, guidance=args.guidance, steps=args.steps, sampler=args.sampler, seed=args.seed,
                  stages=args.stages)
    record = {**record, "pick": args.pick, "portrait_seed": record["seeds"][args.pick],
              "timings": {**record["timings"], "text_s": round(text_s, 4)}}
    avatar.metadata.update(mode="text", input="portrait.png", input_hash=portrait_hash(np.asarray(portrait))[:16],
                           prompt=prompt, negative_prompt=record["negative_prompt"],
                           text_model=record["model"], text_model_hash=record["model_hash"],
                           text_seed=record["portrait_seed"], text_lora=record["lora"], text=record,
                           preprocess={**prepared.record(), "crop_from": "generated"})
    avatar.metadata["timings"] = {**avatar.metadata["timings"], "text_s": round(text_s, 4)}
    folder = args.out / _slug(prompt)
    _write_outputs(avatar, folder, args, prepared)
    atomic_write(folder / "portrait.png", lambda tmp: portrait.save(tmp, format="PNG"))
    if len(images) > 1:
        for i, image in enumerate(images):
            atomic_write(folder / f"candidate_{i:02d}.png", lambda tmp, im=image: im.save(tmp, format="PNG"))
    print(f"{folder}: {avatar.metadata['timings']['total_s'] + text_s:.1f} s")
    return 0


def _prepare_all(jobs, args) -> dict:
    """Job name → PreparedPortrait, for the jobs with a portrait."""
    from engine.preprocess import CropBox, prepare_portrait

    crop = CropBox.parse(args.crop) if args.crop is not None else None
    if crop is not None and sum(portrait is not None for _, portrait, _ in jobs) != 1:
        raise UserError("--crop is in one photo's pixels: give exactly one portrait with it")
    auto = args.preprocess == "auto"
    return {name: prepare_portrait(portrait, detect=auto, align=auto, matte=auto, crop=crop)
            for name, portrait, _ in jobs if portrait is not None}


def _write_outputs(avatar, folder: Path, args, prepared=None) -> None:
    from PIL import Image

    from engine.frames import to_uint8, write_frames
    from engine.io import atomic_write

    started = time.perf_counter()
    front = to_uint8(avatar.render_view(0.0, 0.0, resolution=args.resolution), "white")
    render_s = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    if prepared is not None:
        atomic_write(folder / "input.png", lambda tmp: prepared.image.save(tmp, format="PNG"))
    atomic_write(folder / "front.png", lambda tmp: Image.fromarray(front).save(tmp, format="PNG"))
    timings = {"front_render_s": round(render_s, 4)}
    if args.turntable:
        started = time.perf_counter()
        frames = avatar.turntable(args.turntable, resolution=args.resolution)
        write_frames(folder, frames, args.format, "white", {"frames": args.turntable, "elevation": 10.0,
                                                           "resolution": args.resolution})
        timings["turntable_s"] = round(time.perf_counter() - started, 4)
    avatar.metadata["timings"] = {**avatar.metadata["timings"], **timings}
    avatar.save(folder)
