"""A picture of held-out results: per avatar, the portrait, a ground-truth test view, and the same view rendered
from the model's avatar (cascade), the base-only avatar and the nearest-neighbour retrieval.

    .venv/bin/python benchmarks/heldout_figure.py --model MODEL --data DATASET --triplanes FIT_RUN
        --avatars avatar_00096 ... --out docs/diffusion_heldout.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.avatar import Avatar
from engine.io import atomic_write
from engine.pipeline import AvatarPipeline
from engine.render import RenderConfig, render_image
from training.diffusion.evaluate import Retrieval
from training.fit.data import load_eval_views

SIZE = 128


def render(planes, decoder, views, index: int) -> np.ndarray:
    avatar = Avatar(planes, decoder)
    out = render_image(planes, decoder, views.c2w[index], views.camera_angle_x, SIZE, SIZE,
                       RenderConfig(samples=64), avatar.occupancy())
    return out.rgb.clamp(0, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--triplanes", type=Path, required=True)
    parser.add_argument("--avatars", nargs="+", required=True)
    parser.add_argument("--view", type=int, default=1, help="which held-out test view to show")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pipe = AvatarPipeline.from_pretrained(args.model)
    retrieval = Retrieval(pipe, args.data, args.triplanes, pipe.info.get("training_avatars") or [])
    rows = []
    for name in args.avatars:
        folder = args.data / name
        views = load_eval_views(folder, args.view + 1, resolution=SIZE)
        portrait = np.asarray(Image.open(folder / "portrait.png").convert("RGBA").resize((SIZE, SIZE)),
                              dtype=np.float32) / 255
        portrait = portrait[..., :3] * portrait[..., 3:] + (1 - portrait[..., 3:])
        cells = [portrait, views.on_white(args.view).numpy()]
        for planes in (pipe(folder / "portrait.png", seed=0).planes,
                       pipe(folder / "portrait.png", seed=0, stages="base").planes, retrieval(folder / "portrait.png")[1]):
            cells.append(render(planes, pipe.decoder, views, args.view))
        rows.append(np.concatenate(cells, 1))
    grid = (np.concatenate(rows, 0) * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(grid)
    atomic_write(args.out, lambda tmp: image.save(tmp, format="PNG"))
    print(f"wrote {args.out}: columns = portrait | ground truth | cascade | base only | retrieval")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
