""""Use this model": which model folder a selection of runs gives the generation panel, and how to build it.
Qt-free.

The pipeline loads a model folder (model_index.json + components). A diffusion run holds only its stage, so a
finished base run (plus, optionally, a finished upsample run trained on the same triplanes) becomes a model with
`rodinhd model build`, written inside the base run folder so it is built once.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from studio.launch_command import CLI_MODULE

MODEL_INDEX = "model_index.json"
TRAINING_INFO = "training.json"  # written by `rodinhd train` when a diffusion stage finishes


@dataclass
class ModelChoice:
    action: str                     # load | build | none
    model: Path | None = None       # the folder to load (after building it, for "build")
    argv: list[str] | None = None   # the build command; it writes `building`, renamed to `model` on success
    building: Path | None = None
    message: str = ""               # for "none": what to do instead


def model_choice(selected: list[tuple[Path, str | None]], python: str = sys.executable) -> ModelChoice:
    """`selected`: (run folder, kind key) pairs of the chosen rows."""
    if not selected:
        return ModelChoice("none", message="Select a finished base run (and, Ctrl+click, its upsample run)")
    for folder, _ in selected:
        if (folder / MODEL_INDEX).is_file():
            return ModelChoice("load", folder)
    bases = [f for f, kind in selected if kind == "base"]
    upsamples = [f for f, kind in selected if kind == "upsample"]
    if len(bases) != 1 or len(upsamples) > 1 or len(bases) + len(upsamples) != len(selected):
        if upsamples and not bases:
            return ModelChoice("none", message="An upsample stage needs its base: select the base run too "
                                               "(Ctrl+click), then Use this model")
        return ModelChoice("none", message="Only diffusion runs make a generation model: select one finished base "
                                           "run (and optionally one upsample run) — train them with New run ▸ "
                                           "base / upsample on a fit run's triplanes")
    base, upsample = bases[0], (upsamples[0] if upsamples else None)
    for folder in (base, upsample):
        if folder is not None and not (folder / TRAINING_INFO).is_file():
            return ModelChoice("none", message=f"{folder.name} has not finished (no {TRAINING_INFO} yet): "
                                               "resume it until it finishes, then use it")
    target = base / (f"model_with_{upsample.name}" if upsample else "model")
    if (target / MODEL_INDEX).is_file():
        return ModelChoice("load", target)
    building = target.with_name(f".{target.name}.building")  # never a half-written model under the real name
    argv = [python, "-m", CLI_MODULE, "model", "build", "--base", str(base), "--out", str(building)]
    if upsample is not None:
        argv += ["--upsample", str(upsample)]
    return ModelChoice("build", target, argv, building=building)
