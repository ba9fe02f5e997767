"""Colour following of the text → portrait model: for N held-out prompts that name a hair colour and a clothing
colour, does the generated portrait show them? (training/text/colours.py: hair / clothing region masks derived from
the generator by probe re-rendering, named reference colours measured on training portraits, nearest in CIE Lab.)

Prompts: the captions of held-out avatars (a dataset generated with another seed than the training set) whose hair is
visible (not bald / buzz cut, no hat) and whose clothing has one main colour (solid, knit or logo; two-tone stripes,
checks and dots are left out: their "dominant colour" is ambiguous). Printed:
  * per-attribute match rates (hair, clothing), the case rate (hair and clothing each one case, 2N cases) and the
    joint rate (both right in one portrait);
  * the measure's own ground-truth rate: the same measure on the held-out avatars' real portraits;
  * baselines: a uniform random colour name per attribute (simulated, 1000 draws; expectation 1/15 hair, 1/14
    clothing), and the generated portraits scored against other prompts' colours (shuffled prompts: what a model that
    ignores colour words but draws plausible colours gets).

    .venv/bin/python benchmarks/text_colour_following.py [--model assets/models/text_default] [--n 50]

Writes a grid (prompt colours → portrait, green label = both match) to docs/text2portrait_samples.png and the numbers
to runs/text_default/colour_eval.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def rates(pred: list[dict], hair: list[str], cloth: list[str]) -> dict:
    h = np.array([p["hair"] == x for p, x in zip(pred, hair)])
    c = np.array([p["cloth"] == x for p, x in zip(pred, cloth)])
    return {"hair": float(h.mean()), "cloth": float(c.mean()), "cases": float(np.concatenate([h, c]).mean()),
            "joint": float((h & c).mean())}


def grid(images: np.ndarray, labels: list[str], ok: list[tuple[bool, bool]], path: Path, cols: int = 10,
         scale: int = 2) -> None:
    r = images.shape[1] * scale
    cell_h = r + 24
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * r, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, text, (oh, oc)) in enumerate(zip(images, labels, ok)):
        x, y = (i % cols) * r, (i // cols) * cell_h
        canvas.paste(Image.fromarray(img).resize((r, r), Image.Resampling.NEAREST), (x, y))
        hair, cloth = text.split(" / ")
        draw.text((x + 2, y + r + 1), hair[:21], fill=(0, 128, 0) if oh else (200, 0, 0))
        draw.text((x + 2, y + r + 12), cloth[:21], fill=(0, 128, 0) if oc else (200, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("assets/models/text_default"))
    ap.add_argument("--train-data", type=Path, default=Path("data/text3k"), help="calibrates the colour measure")
    ap.add_argument("--eval-data", type=Path, default=Path("data/text_eval"), help="held-out avatars (other seed)")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float,
                    help="default: TextPortraitPipeline.default_guidance (the model's guidance_default, else 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measure", type=Path, default=Path("runs/text_default/colour_measure.json"))
    ap.add_argument("--grid", type=Path, default=Path("docs/text2portrait_samples.png"))
    ap.add_argument("--json", type=Path, default=Path("runs/text_default/colour_eval.json"))
    ap.add_argument("--check-pipeline", type=int, default=2, help="re-generate this many with TextPortraitPipeline")
    args = ap.parse_args()

    from diffusers import DDPMScheduler, UNet2DConditionModel

    from engine.text import TextPortraitPipeline
    from training.text.colours import ColourMeasure, calibrate, cloth_single, hair_visible
    from training.text.dataset import encode_captions, load_portrait_set
    from training.text.train import sample

    t0 = time.time()
    index = json.loads((args.model / "model_index.json").read_text())
    res = int(index["resolution"])
    pipe = TextPortraitPipeline.from_pretrained(args.model)  # the inference side: its default and the check below
    if args.guidance is None:
        args.guidance = pipe.default_guidance  # one definition of the default (and its fallback): the pipeline's
    if args.measure.is_file():
        measure = ColourMeasure.load(args.measure)
    else:
        measure = calibrate(load_portrait_set([args.train_data], res))
        args.measure.parent.mkdir(parents=True, exist_ok=True)
        measure.save(args.measure)
    print(f"colour measure: hair region {measure.hair_mask.sum()} px, clothing region {measure.cloth_mask.sum()} px "
          f"of {res}²; {len(measure.hair_refs)} hair / {len(measure.cloth_refs)} clothing names")

    held = load_portrait_set([args.eval_data], res)
    ok = [i for i in range(len(held)) if hair_visible(held.meta[i]) and cloth_single(held.meta[i])]
    rng = np.random.default_rng(args.seed)
    pick = sorted(rng.choice(ok, size=min(args.n, len(ok)), replace=False).tolist())
    ev = held.subset(pick)
    n = len(ev)
    gt_pred = [measure.classify(img) for img in ev.images]
    gt = rates(gt_pred, ev.hair, ev.cloth)
    all_pred = [measure.classify(held.images[i]) for i in ok]
    gt_all = rates(all_pred, [held.hair[i] for i in ok], [held.cloth[i] for i in ok])

    unet = UNet2DConditionModel.from_pretrained(str(args.model / "unet"), torch_dtype=torch.float32).eval()
    scheduler = DDPMScheduler.from_pretrained(str(args.model / "scheduler"))
    cache = encode_captions(ev.captions, int(index.get("max_tokens", 77)))
    hidden, mask = cache.lookup(ev.captions)
    uh, um = cache.lookup([""])
    t1 = time.time()
    with torch.no_grad():
        x = torch.cat([sample(unet, scheduler.config, hidden[i:i + 10], mask[i:i + 10], uh, um, args.steps,
                              args.guidance, args.seed + i, res) for i in range(0, n, 10)])
    gen_s = time.time() - t1
    images = ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    pred = [measure.classify(img) for img in images]
    model = rates(pred, ev.hair, ev.cloth)

    # baselines
    hair_names, cloth_names = list(measure.hair_refs), list(measure.cloth_refs)
    sims = [rates([{"hair": rng.choice(hair_names), "cloth": rng.choice(cloth_names)} for _ in range(n)],
                  ev.hair, ev.cloth) for _ in range(1000)]
    uniform = {k: float(np.mean([s[k] for s in sims])) for k in sims[0]}
    shuffles = []
    for _ in range(200):
        perm = rng.permutation(n)
        while n > 1 and np.any(perm == np.arange(n)):
            perm = rng.permutation(n)
        shuffles.append(rates(pred, [ev.hair[j] for j in perm], [ev.cloth[j] for j in perm]))
    shuffled = {k: float(np.mean([s[k] for s in shuffles])) for k in shuffles[0]}

    # the same folder through the inference pipeline (engine.text), to check both sides agree
    pipeline_check = None
    if args.check_pipeline:
        try:
            diffs = []
            for i in range(min(args.check_pipeline, n)):
                # image i started from torch.Generator().manual_seed(seed + i) in both
                im = pipe(ev.captions[i], n=1, steps=args.steps, guidance=args.guidance, seed=args.seed + i)
                diffs.append(float(np.abs(np.asarray(im[0], np.float32) - images[i].astype(np.float32)).max()))
            pipeline_check = {"images": len(diffs), "max_abs_diff_8bit": max(diffs)}
        except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
            pipeline_check = {"error": f"{type(exc).__name__}: {exc}"}

    labels = [f"hair: {h} / cloth: {c}" for h, c in zip(ev.hair, ev.cloth)]
    marks = [(p["hair"] == h, p["cloth"] == c) for p, h, c in zip(pred, ev.hair, ev.cloth)]
    grid(images, labels, marks, args.grid)

    table = [("model (generated)", model), ("ground-truth portraits (same prompts)", gt),
             (f"ground-truth portraits (all {len(ok)} eligible held-out)", gt_all),
             ("random colour name (uniform)", uniform), ("generated vs shuffled prompts", shuffled)]
    print(f"\n{n} held-out prompts, DDIM {args.steps} steps, guidance {args.guidance}, seed {args.seed} "
          f"(generation {gen_s:.0f} s)")
    print(f"{'':44s} {'hair':>6s} {'cloth':>6s} {'cases':>6s} {'joint':>6s}")
    for name, r in table:
        print(f"{name:44s} {r['hair']:6.1%} {r['cloth']:6.1%} {r['cases']:6.1%} {r['joint']:6.1%}")
    if pipeline_check:
        print(f"TextPortraitPipeline check: {pipeline_check}")
    print(f"grid: {args.grid}")
    result = {"n": n, "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "model": str(args.model),
              "rates": {name: r for name, r in table}, "pipeline_check": pipeline_check,
              "prompts": [{"caption": c, "hair": h, "cloth": cl, "pred": p, "gt_pred": g}
                          for c, h, cl, p, g in zip(ev.captions, ev.hair, ev.cloth, pred, gt_pred)],
              "measure": measure.info, "seconds": round(time.time() - t0, 1)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
