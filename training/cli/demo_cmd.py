"""`rodinhd demo`: what `make run` does until the studio exists — generate a few avatars, check them and draw
a contact sheet, end to end through the same code as the real commands."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="generate, check and preview a small synthetic dataset",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the demo dataset")
    p.add_argument("--count", type=int, default=4, help="number of avatars")
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.cli.main import main

    data = args.out / "data"
    sheet = args.out / "contact_sheet.png"
    steps = [
        ["synth", "--out", str(data), "--count", str(args.count), "--views", "8", "--test-views", "2",
         "--resolution", "128", "--seed", "7", "--overwrite"],
        ["data", "check", str(data)],
        ["data", "preview", str(data), "--out", str(sheet), "--views", "4"],
    ]
    for step in steps:
        print("$ rodinhd " + " ".join(step))
        code = main(step)
        if code != 0:
            return code
    print(f"demo finished: dataset in {data}, contact sheet at {sheet}")
    return 0
