"""`rodinhd text2portrait "PROMPT" --out DIR`: prompt → N portrait candidates with a text → portrait model
(engine.text). Writes DIR/candidate_00.png … and DIR/text2portrait.json (prompt, settings, model hash, LoRA,
notes, timings). A prompt longer than the text encoder reads is cut, with a note on stderr and in the json."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from engine.errors import UserError
from training.cli.common import int_arg

DEFAULT_TEXT_MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "text_default"
DEFAULT_N, DEFAULT_STEPS = 4, 25  # = engine.text (not imported here: --help stays fast)


def add_text_model_args(p, model_flag: str = "--model") -> None:
    """The text-model flags shared with `generate --prompt`."""
    p.add_argument(model_flag, dest="text_model", type=Path, default=DEFAULT_TEXT_MODEL,
                   help="text → portrait model folder (ours, or a local Stable Diffusion 1.x/2.x diffusers folder)")
    p.add_argument("--lora", type=Path, help="LoRA adapter (.safetensors) to apply to the text model")
    p.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength, 0–2")
    p.add_argument("--negative", default="", help="negative prompt (what the candidates should not look like)")
    p.add_argument("--add-trigger", action="store_true",
                   help="put the model's (or LoRA's) trigger words in front of the prompt when it lacks them")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "text2portrait", help="text prompt → portrait candidates (the text front end of generate --prompt)",
        description='rodinhd text2portrait "a woman with short red hair" --out DIR',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("prompt", help="what the person looks like")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_text_model_args(p)
    p.add_argument("--n", type=int_arg, default=DEFAULT_N,
                   help="number of candidates (1–16); candidate i uses seed+i")
    p.add_argument("--seed", type=int_arg, default=0, help="random seed of the first candidate")
    p.add_argument("--steps", type=int_arg, default=DEFAULT_STEPS, help="DDIM sampling steps")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (0–30; default: the model's "
                   "guidance_default, else 5)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.set_defaults(handler=run)


def load_text_pipeline(folder: Path, device: str, lora: Path | None, lora_scale: float, flag: str = "--model"):
    """The text pipeline with its LoRA; a missing default model is a UserError naming the flag."""
    from engine.text import TextPortraitPipeline
    from engine.text.lora import check_scale

    check_scale(lora_scale)
    if not Path(folder).exists():
        raise UserError(f"{folder}: no text → portrait model there; give one with {flag} (a folder written by "
                        "the text training, or a local Stable Diffusion 1.x/2.x diffusers folder)")
    pipe = TextPortraitPipeline.from_pretrained(folder, device=device)
    if lora is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe.load_lora(lora, lora_scale)
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
    return pipe


def sample_candidates(pipe, prompt: str, *, negative: str, n: int, steps: int, guidance: float, seed: int,
                      add_trigger: bool, desc: str = "text2portrait"):
    """Run the pipeline with a tqdm bar over steps; truncation notes go to stderr ("note: …").
    → (images, record)."""
    from tqdm import tqdm

    from engine.text.pipeline import PromptTruncated

    bar = tqdm(total=steps, unit="step", desc=desc)

    def on_step(progress):
        bar.total = progress.total
        bar.update(progress.step - bar.n)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptTruncated)  # shown below from the record, once
            images = pipe(prompt, negative_prompt=negative, n=n, steps=steps, guidance=guidance, seed=seed,
                          callback=on_step, add_trigger=add_trigger)
    finally:
        bar.close()
    record = dict(pipe.last_record)
    for note in record["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return images, record


def run(args) -> int:
    from engine.io import atomic_write, atomic_write_json

    started = time.perf_counter()
    if not args.prompt.strip():
        raise UserError('prompt is empty: describe the person, e.g. "a woman with short red hair and glasses"')
    pipe = load_text_pipeline(args.text_model, args.device, args.lora, args.lora_scale)
    loaded = time.perf_counter()
    images, record = sample_candidates(pipe, args.prompt, negative=args.negative, n=args.n, steps=args.steps,
                                       guidance=args.guidance, seed=args.seed, add_trigger=args.add_trigger)
    sampled = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, image in enumerate(images):
        name = f"candidate_{i:02d}.png"
        atomic_write(args.out / name, lambda tmp, im=image: im.save(tmp, format="PNG"))
        files.append(name)
    record["candidates"] = [{"file": f, "seed": s} for f, s in zip(files, record["seeds"])]
    record["timings"] = {"load_s": round(loaded - started, 4), "sample_s": round(sampled - loaded, 4),
                         "total_s": round(time.perf_counter() - started, 4)}
    atomic_write_json(args.out / "text2portrait.json", record)
    print(f"{args.out}: {len(images)} candidate(s), {record['timings']['total_s']:.1f} s")
    return 0
