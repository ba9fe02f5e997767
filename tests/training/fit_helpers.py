"""Tiny fitting settings and CLI helpers shared by the fitting tests (imported as a plain module)."""
from __future__ import annotations

import json
from pathlib import Path

from training.cli.main import main

TINY = {
    "decoder": {"channels": 8, "hidden": 16, "geo_features": 8}, "render": {"samples": 8},
    "triplane_resolution": 16, "rays_per_step": 64, "occupancy_size": 16, "epochs": 2, "inner_steps": 3,
    "stage2_steps": 3, "eval_views": 1, "eval_resolution": 16,
}


def set_args(fields: dict, prefix: str = "") -> list[str]:
    """{"decoder": {"hidden": 16}, "epochs": 2} → ["--set", "decoder.hidden=16", "--set", "epochs=2"]."""
    args: list[str] = []
    for key, value in fields.items():
        if isinstance(value, dict):
            args += set_args(value, f"{prefix}{key}.")
        else:
            args += ["--set", f"{prefix}{key}={json.dumps(value)}"]
    return args


def cli(argv: list) -> int:
    """main(argv) as an exit code (argparse errors raise SystemExit)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def make_dataset(out: Path, count: int = 3) -> Path:
    assert cli(["synth", "--out", out, "--count", count, "--views", 6, "--test-views", 2, "--resolution", 32,
                "--seed", 1]) == 0
    return out
