"""`rodinhd train --recipe NAME --out DIR`: the whole default model from nothing, one `rodinhd` command per step,
each in its own process: synthetic avatars → stage-1 decoder → stage-2 triplanes → (pretrained MobileNetV2
encoder: nothing to train) → base → upsample → model folder → text data → text model.

Resumable at every step: DIR/recipe.json records the steps that finished; a rerun skips them and continues an
interrupted one with its own `--resume`. Ctrl-C / SIGTERM reaches the running steps, which checkpoint and stop.
`jobs` > 1 runs independent steps at the same time (base ‖ upsample, the text chain ‖ the avatar chain).

    default  the shipped avatar model's recipe (docs/diffusion.md; ~2 h of CPU) + a CPU-sized text model (~50 min)
    smoke    the same chain at minute sizes (about a minute; the model is useless) — checks an install end to end
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.errors import UserError
from engine.io import atomic_write_json
from training.runs.signals import stop_signals

STATE_FILE = "recipe.json"


@dataclass
class Step:
    name: str
    argv: list[str]  # rodinhd arguments
    output: Path  # what the step writes (dataset, run or model folder)
    resume: list[str] = field(default_factory=lambda: ["--resume"])  # added when continuing an interrupted step
    minutes: float = 0.0  # expected CPU minutes (default recipe), shown in the plan
    after: tuple[str, ...] = ()  # steps that must finish first (the others may run at the same time)


def _sets(**fields) -> list[str]:
    return [a for k, v in fields.items() for a in ("--set", f"{k}={json.dumps(v)}")]


# Minute sizes for `smoke` (the same ones the tests use for each command).
_SMOKE_FIT = _sets(**{"decoder.channels": 8, "decoder.hidden": 16, "decoder.geo_features": 8, "render.samples": 8,
                      "triplane_resolution": 16, "rays_per_step": 64, "occupancy_size": 16, "epochs": 2,
                      "inner_steps": 3, "stage2_steps": 3, "eval_views": 1, "eval_resolution": 16})
_SMOKE_COMMON = {"encoder_image_size": 32, "batch_size": 2, "log_every": 1, "checkpoint_every": 1,
                 "sample_every": 0, "warmup_steps": 1, "stage.schedule.timesteps": 50, "stage.unet.channels": 8,
                 "stage.unet.model_channels": 8, "stage.unet.channel_mult": [1, 2], "stage.unet.head_dim": 8,
                 "stage.unet.context_dim": 16}
_SMOKE_BASE = _sets(**_SMOKE_COMMON, **{"stage.resolution": 8, "stage.unet.resolution": 8,
                                        "stage.unet.attention_levels": [1], "stage.unet.cross_attention_levels": [0, 1]})
_SMOKE_UP = _sets(**_SMOKE_COMMON, **{"patch_samples": 8, "stage.resolution": 16, "stage.lowres_resolution": 8,
                                      "stage.unet.resolution": 16, "stage.unet.lowres_channels": 8})
_SMOKE_TEXT = _sets(**{"block_out_channels": [8, 16], "attention_levels": [1], "norm_num_groups": 4,
                       "attention_head_dim": 4, "batch_size": 2, "steps": 2, "checkpoint_every": 2})

SIZES = {
    "default": {"avatars": 112, "train_avatars": 96, "views": ["--views", "64", "--test-views", "8"],
                # 64 avatars chosen to cover the palette (docs/decoder_reach.md), never the held-out ones
                "stage1": ["--avatars", "64", "--select", "cover", "--pool", "96", "--mode", "replay", "--epochs", "2",
                           *_sets(replay_lr_decay=1)],
                # batched, warm-started from stage 1's mean triplane: +0.46 dB and 1.16× the avatars/hour of the
                # per-avatar path at 300 steps (450 steps: 26 dB, but 1.44× the time; docs/fitting_at_scale.md)
                "stage2": ["--avatars", "96", "--steps", "300", *_sets(rays_per_step=2048)],
                "base": ["--batch", "4", "--steps", "2018", *_sets(ema_decay=0.995, **{"stage.prediction_type": "sample"})],
                "upsample": ["--batch", "2", "--steps", "1331", *_sets(ema_decay=0.995)],
                "text_avatars": 1000,
                # CPU text model: the shipped architecture gets only ~600 steps in a CPU budget and follows no colour
                # (5 % of cases, random 7 %); this smaller one gets ~2,400 steps in 45 min and 20 % (docs/EVAL.md)
                "text": _sets(block_out_channels=[16, 32, 64, 128], lr=1e-3, batch_size=16, max_minutes=45,
                              checkpoint_every=200),
                "text_gpu": _sets(max_minutes=7, checkpoint_every=1000),  # = the shipped text model's recipe
                "minutes": {"synth": 8, "stage1": 30, "stage2": 23, "base": 42, "upsample": 39, "build": 0.5,
                            "text_data": 4, "text": 45}},
    "smoke": {"avatars": 3, "train_avatars": 2, "views": ["--views", "6", "--test-views", "2", "--resolution", "32"],
              "stage1": ["--avatars", "2", *_SMOKE_FIT], "stage2": ["--avatars", "2", *_SMOKE_FIT],
              "base": ["--steps", "2", *_SMOKE_BASE], "upsample": ["--steps", "2", *_SMOKE_UP],
              "text_avatars": 4, "text": _SMOKE_TEXT, "text_gpu": _SMOKE_TEXT, "minutes": {}},
}
RECIPES = tuple(SIZES)


def recipe_steps(name: str, out: Path, device: str | None = None, workers: int = 1, with_text: bool = True
                 ) -> list[Step]:
    """The steps of recipe `name`, writing under `out`."""
    if name not in SIZES:
        raise UserError(f"unknown recipe {name!r} (choose from {', '.join(RECIPES)})")
    size, out = SIZES[name], Path(out)
    data, text_data = out / "data", out / "text_data"
    dev = ["--device", device] if device else []
    par = ["--workers", str(workers)]
    minutes = size["minutes"]
    steps = [
        Step("synth", ["synth", "--out", str(data), "--count", str(size["avatars"]), "--seed", "11", *size["views"],
                       *par], data, minutes=minutes.get("synth", 0)),
        Step("stage1", ["fit", "--stage", "1", "--data", str(data), "--out", str(out / "stage1"), *size["stage1"],
                        *dev], out / "stage1", minutes=minutes.get("stage1", 0), after=("synth",)),
        Step("stage2", ["fit", "--stage", "2", "--decoder", str(out / "stage1"), "--data", str(data), "--out",
                        str(out / "fits"), "--warm-start", str(out / "stage1" / "triplanes"), *size["stage2"], *par,
                        *dev], out / "fits",
             minutes=minutes.get("stage2", 0), after=("stage1",)),
    ]
    for stage in ("base", "upsample"):  # independent of each other: they can train at the same time
        steps.append(Step(stage, ["train", "--stage", stage, "--data", str(data), "--triplanes", str(out / "fits"),
                                  "--out", str(out / stage), *size[stage], *dev], out / stage,
                          minutes=minutes.get(stage, 0), after=("stage2",)))
    steps.append(Step("build", ["model", "build", "--base", str(out / "base"), "--upsample", str(out / "upsample"),
                                "--out", str(out / "model"), "--half"], out / "model", resume=[],
                      minutes=minutes.get("build", 0), after=("base", "upsample")))
    if with_text:
        text_sizes = size["text_gpu"] if device and device.startswith("cuda") else size["text"]
        steps += [
            Step("text_data", ["synth", "--out", str(text_data), "--count", str(size["text_avatars"]), "--views", "1",
                               "--test-views", "0", "--resolution", "128" if name == "default" else "32",
                               "--seed", "101", *par], text_data, minutes=minutes.get("text_data", 0),
                 after=("synth",)),
            Step("text", ["train", "--stage", "text", "--data", str(text_data), "--out", str(out / "text"),
                          *text_sizes, *dev], out / "text", minutes=minutes.get("text", 0), after=("text_data",)),
        ]
    return steps


def _state(out: Path) -> dict:
    path = out / STATE_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is damaged ({exc}); delete it to start the recipe over") from exc


class ChildRunner:
    """Runs one `rodinhd` command per call in its own process (callable from worker threads); `signal_all` passes
    SIGINT/SIGTERM on to every live child so each step checkpoints."""

    def __init__(self) -> None:
        self.live: set[subprocess.Popen] = set()

    def __call__(self, argv: list[str]) -> int:
        # its own session: a terminal's Ctrl-C reaches only this process, which forwards it once (signal_all); a
        # second SIGINT would turn the child's polite checkpoint-and-stop into a KeyboardInterrupt
        child = subprocess.Popen([sys.executable, "-m", "training.cli.main", *argv], start_new_session=True)
        self.live.add(child)
        try:
            return child.wait()
        finally:
            self.live.discard(child)

    def signal_all(self, signum: int, _frame=None) -> None:
        for child in list(self.live):
            child.send_signal(signum)


def finished(step: Step) -> bool:
    """Whether the step's output is complete: its run ended "finished" (a stopped run exits 0 too), or the
    dataset index / model index that synth / model build write last exists."""
    status = step.output / "status.json"
    if status.is_file():
        try:
            return json.loads(status.read_text()).get("state") == "finished"
        except (OSError, ValueError):
            return False
    return (step.output / "index.json").is_file() or (step.output / "model_index.json").is_file()


def _prepared_argv(step: Step) -> list[str]:
    """The step's command; continued with its --resume when an earlier attempt left its output."""
    argv = list(step.argv)
    if step.output.exists():
        if step.resume:
            argv += step.resume
        else:  # a half-written output of a step that cannot resume: start it again
            shutil.rmtree(step.output)
    return argv


def run_recipe(name: str, out: Path, device: str | None = None, workers: int = 1, with_text: bool = True,
               runner: Callable[[list[str]], int] | None = None, log: Callable[[str], None] = print,
               jobs: int = 1) -> dict:
    """Run (or continue) recipe `name` in `out`, at most `jobs` steps at a time (each when the steps it needs
    are done). Returns the state ({"recipe", "done": {step: seconds}})."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _state(out)
    if state and state.get("recipe") != name:
        raise UserError(f"{out} holds recipe {state.get('recipe')!r}, not {name!r}; use another --out")
    state = {"recipe": name, "done": state.get("done", {}), "device": device}
    steps = recipe_steps(name, out, device, workers, with_text)
    total = sum(s.minutes for s in steps if s.name not in state["done"])
    log(f"recipe {name}: {len(steps)} steps in {out}, {jobs} at a time"
        + (f", about {total:.0f} CPU-minutes of steps left" if total else ""))
    runner = runner or ChildRunner()
    forward = getattr(runner, "signal_all", None)
    with stop_signals(forward) if forward else nullcontext():
        _schedule(steps, state, out, runner, log, max(1, jobs))
    return state


def _schedule(steps: list[Step], state: dict, out: Path, runner, log, jobs: int) -> None:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    number = {step.name: i for i, step in enumerate(steps, 1)}
    for step in steps:
        if step.name in state["done"]:
            log(f"[{number[step.name]}/{len(steps)}] {step.name}: done already")
    pending = [s for s in steps if s.name not in state["done"]]
    running, failed = {}, []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            ready = [s for s in pending if all(d in state["done"] for d in s.after)]
            while ready and len(running) < jobs and not failed:
                step = ready.pop(0)
                pending.remove(step)
                argv = _prepared_argv(step)
                log(f"[{number[step.name]}/{len(steps)}] {step.name}: rodinhd {shlex.join(argv)}")
                running[pool.submit(runner, argv)] = (step, time.time())
            if not running:
                break  # a failure stopped the starts, or nothing left can start
            completed, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in completed:
                step, started = running.pop(future)
                code = future.result()
                if code != 0 or not finished(step):
                    failed.append((step.name, code))
                    continue
                state["done"][step.name] = round(time.time() - started, 1)
                atomic_write_json(out / STATE_FILE, state)
    if failed:
        name, code = failed[0]
        how = f"exit code {code}" if code else "it did not finish"
        raise UserError(f"recipe step {name!r} stopped ({how}); run the same command again to continue from it")


def install(out: Path, model_out: Path | None, text_out: Path | None) -> None:
    """Copy the recipe's model folders to their destinations (replacing them whole, never half)."""
    for source, target in ((out / "model", model_out), (out / "text" / "model", text_out)):
        if target is None:
            continue
        if not source.is_dir():
            raise UserError(f"{source} does not exist: finish the recipe first")
        temp = Path(str(target) + f".tmp{os.getpid()}")
        shutil.rmtree(temp, ignore_errors=True)
        shutil.copytree(source, temp)
        if target.exists():
            shutil.rmtree(target)
        temp.rename(target)


__all__ = ["RECIPES", "ChildRunner", "Step", "install", "recipe_steps", "run_recipe"]
