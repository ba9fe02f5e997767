"""Which portrait encoder identifies avatars better? Nearest-neighbour retrieval with each encoder's pooled
feature pyramid, scored by rendering the retrieved avatar's fitted triplane against the held-out views.
Baseline, measured in the same run: the pretrained MobileNetV2 pyramid (the default encoder).

    .venv/bin/python benchmarks/encoder_retrieval.py --model MODEL --data DATASET --triplanes FIT_RUN
        --encoder VAE_RUN/encoder --avatars avatar_00096 ...
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.encoders import load_encoder
from engine.pipeline import AvatarPipeline
from training.diffusion.evaluate import Retrieval, evaluate_methods, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model folder (its encoder is the baseline)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--triplanes", type=Path, required=True, help="fit run of the training avatars")
    parser.add_argument("--encoder", type=Path, required=True, help="encoder folder to compare")
    parser.add_argument("--avatars", nargs="+", required=True, help="held-out avatars of --data")
    args = parser.parse_args()
    pipe = AvatarPipeline.from_pretrained(args.model)
    other = AvatarPipeline(pipe.decoder, load_encoder(args.encoder), pipe.base, pipe.upsample)
    names = pipe.info.get("training_avatars") or []
    methods = {}
    for label, candidate in ((pipe.encoder.KIND, pipe), (f"{other.encoder.KIND} ({args.encoder})", other)):
        retrieval = Retrieval(candidate, args.data, args.triplanes, names)
        methods[label] = (lambda r: lambda portrait, seed: r(portrait)[1])(retrieval)
    results = evaluate_methods(methods, args.data, args.avatars, pipe.decoder, progress=print)
    print(markdown_table(results))


if __name__ == "__main__":
    main()
