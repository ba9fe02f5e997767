"""How good is a trained model on held-out portraits, against baselines (the table in docs/diffusion.md).

Methods: the model (cascade and base only, 10 DDIM steps, guidance 1.3), the same model unconditional (same seeds),
and nearest-neighbour retrieval (the fitted triplane of the training avatar whose portrait features are closest).

    .venv/bin/python benchmarks/heldout_eval.py --model MODEL --data DATASET --triplanes FIT_RUN
        --avatars avatar_00096 ... [--views 4] [--size 128] [--out docs/diffusion_eval.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.io import atomic_write_json
from engine.pipeline import AvatarPipeline
from training.diffusion.evaluate import Retrieval, evaluate_methods, markdown_table, standard_methods

LABELS = {"cascade": "RodinHD tiny (cascade)", "base_only": "RodinHD tiny (base only: the 32² triplane)",
          "unconditional": "unconditional samples (same seeds)", "retrieval": "nearest-neighbour retrieval"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--triplanes", type=Path, required=True, help="fit run of the training avatars")
    parser.add_argument("--avatars", nargs="+", required=True, help="held-out avatars of --data")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write the full results as JSON")
    args = parser.parse_args()
    pipe = AvatarPipeline.from_pretrained(args.model)
    training = pipe.info.get("training_avatars") or []
    overlap = sorted(set(training) & set(args.avatars))
    if overlap:
        raise SystemExit(f"not held out: {', '.join(overlap)} were used in training")
    retrieval = Retrieval(pipe, args.data, args.triplanes, training)
    methods = standard_methods(pipe, retrieval, steps=args.steps)
    results = evaluate_methods(methods, args.data, args.avatars, pipe.decoder, args.views, args.size,
                               progress=print)
    print(f"\n{len(args.avatars)} held-out avatars × {args.views} test views at {args.size}²; "
          f"{len(retrieval.names)} training avatars\n")
    print(markdown_table(results, LABELS))
    if args.out:
        atomic_write_json(args.out, {"settings": vars(args) | {"model": str(args.model), "data": str(args.data),
                                                               "triplanes": str(args.triplanes),
                                                               "out": str(args.out)},
                                     "results": results})
        print(json.dumps({k: v["mean"] for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
