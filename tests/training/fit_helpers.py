"""Tiny fitting settings and CLI helpers shared by the fitting tests (imported as a plain module)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from training.cli.main import main
from training.fit.config import FitConfig

ROOT = Path(__file__).resolve().parents[2]
AVATARS = ["avatar_00000", "avatar_00001", "avatar_00002"]

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


def tiny_config(**changes) -> FitConfig:
    return FitConfig.from_dict({**TINY, **changes})


def stage1_args(data: Path, out: Path, avatars: int = 2) -> list:
    return ["fit", "--stage", "1", "--data", data, "--out", out, "--avatars", str(avatars), *set_args(TINY)]


def stage2_args(decoder: Path, data: Path, out: Path, *more) -> list:
    return ["fit", "--stage", "2", "--decoder", decoder, "--data", data, "--out", out, *set_args(TINY), *more]


def status_of(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def child_env() -> dict:
    """Environment for child processes (torchrun): the repo on the path, offline, one thread each."""
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
