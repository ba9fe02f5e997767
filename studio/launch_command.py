"""A new-run request (what the dialog holds) → a checked `rodinhd` command line. Qt-free.

Nothing is launched with a known mistake: a missing dataset, an existing output folder, a number that is not one,
or a config the command would refuse (the preset + overrides are built here exactly as the CLI builds them).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.config_form import changed_values, check_config, config_fields, set_arguments
from studio.run_kinds import KINDS, KindSpec

CLI_MODULE = "training.cli.main"  # `python -m training.cli.main` is `rodinhd` without relying on the script's PATH
DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


@dataclass
class LaunchRequest:
    kind: str
    out: str
    preset: str = "tiny"
    inputs: dict[str, str] = field(default_factory=dict)   # flag → folder text, e.g. {"--data": "data/fit"}
    values: dict[str, Any] = field(default_factory=dict)   # field path → form text (or bool)
    device: str = "cpu"
    processes: Any = 1
    avatars: str = ""                                      # first K avatars; blank = all


@dataclass
class LaunchPlan:
    argv: list[str]        # the full command (python -m …, or torchrun)
    out: Path
    kind: str
    total: int | None      # kinds without a run folder: how much work (for the progress bar)
    changes: dict[str, Any]


class LaunchInvalid(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def form_fields(spec: KindSpec, config: Any) -> list:
    """The fields the form shows for a kind: every config field, or only those with a flag (synth)."""
    fields = config_fields(config)
    return [f for f in fields if f.path in spec.option_fields] if spec.option_fields else fields


def plan_launch(request: LaunchRequest, python: str = sys.executable) -> LaunchPlan:
    """The command for `request`; LaunchInvalid with every problem found (nothing is written)."""
    spec = KINDS.get(request.kind)
    if spec is None:
        raise LaunchInvalid([f"unknown kind {request.kind!r}"])
    errors: list[str] = []
    if request.preset not in spec.presets:
        errors.append(f"preset must be one of {', '.join(spec.presets)} (got {request.preset!r})")
        config = spec.make_config(spec.presets[0])
    else:
        config = spec.make_config(request.preset)
    changes, form_errors = changed_values(form_fields(spec, config), request.values)
    errors += form_errors
    if not form_errors:
        problem = check_config(config, changes)
        if problem:
            errors.append(problem)
    errors += _input_errors(spec, request.inputs)
    out = Path(request.out).expanduser() if request.out.strip() else None
    errors += _output_errors(out)
    processes, more = _processes(spec, request)
    errors += more
    avatars, more = _avatars(spec, request.avatars)
    errors += more
    if errors:
        raise LaunchInvalid(errors)
    args = [*spec.command, "--out", str(out), "--preset", request.preset]
    for source in spec.inputs:
        args += [source.flag, str(Path(request.inputs[source.flag].strip()).expanduser())]
    if spec.device:
        args += ["--device", request.device]
    if avatars is not None:
        args += ["--avatars", str(avatars)]
    args += _option_arguments(spec, changes) if spec.option_fields else set_arguments(changes)
    args += list(spec.launch_flags)
    if processes > 1:  # torchrun: one node, N processes; each rank gets its own GPU from LOCAL_RANK
        prefix = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                  "-m", CLI_MODULE]
    else:
        prefix = [python, "-m", CLI_MODULE]
    total = None
    if spec.total_field:
        total = changes.get(spec.total_field, getattr(config, spec.total_field, None))
    return LaunchPlan([*prefix, *args], out, spec.key, total, changes)


def _option_arguments(spec: KindSpec, changes: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for path, value in changes.items():
        args += [spec.option_fields[path], str(value)]
    return args


def _input_errors(spec: KindSpec, inputs: dict[str, str]) -> list[str]:
    errors = []
    for source in spec.inputs:
        text = (inputs.get(source.flag) or "").strip()
        if not text:
            errors.append(f"{source.label}: choose a folder")
            continue
        folder = Path(text).expanduser()
        problem = folder_problem(folder, source.must_be)
        if problem:
            errors.append(f"{source.label}: {problem}")
    return errors


def folder_problem(folder: Path, must_be: str) -> str | None:
    """Why `folder` is not what an input needs, or None."""
    if not folder.is_dir():
        return f"{folder} does not exist" if not folder.exists() else f"{folder} is not a folder"
    if must_be == "stage1_run" and (folder / "config.json").is_file() and not (folder / "status.json").exists():
        return None  # a decoder folder itself (config.json + weights), which `fit --stage 2 --decoder` also takes
    checks = {
        "dataset": (folder / "index.json", "is not a dataset (no index.json); make one with `rodinhd synth` or "
                                           "`rodinhd data import`"),
        "stage1_run": (folder / "decoder", "holds no decoder/ (a finished `fit stage 1` run has one)"),
        "fit_run": (folder / "triplanes", "holds no triplanes/ (a finished `fit` run has one)"),
        "text_model": (folder / "model_index.json", "is not a model folder (no model_index.json)"),
    }
    needed, message = checks[must_be]
    return None if needed.exists() else f"{folder} {message}"


def _output_errors(out: Path | None) -> list[str]:
    if out is None:
        return ["Output folder: choose where the run goes"]
    if out.is_file():
        return [f"Output folder: {out} is a file"]
    if out.is_dir() and any(out.iterdir()):
        return [f"Output folder: {out} already exists and is not empty; choose a new folder (to continue a run, "
                "select it in the list and press Resume)"]
    return []


def _processes(spec: KindSpec, request: LaunchRequest) -> tuple[int, list[str]]:
    errors = []
    if spec.device and not DEVICE.match(request.device.strip()):
        errors.append(f"Device: expected cpu, cuda or cuda:N (got {request.device!r})")
    try:
        processes = int(str(request.processes).strip())
    except ValueError:
        return 1, errors + [f"Processes: expected a whole number, got {request.processes!r}"]
    if processes < 1:
        errors.append(f"Processes: at least 1 (got {processes})")
    elif processes > 1 and not spec.distributed:
        errors.append(f"Processes: a {spec.label} run uses one process (fit stage 2, base and upsample can use "
                      "several)")
    elif processes > 1 and re.match(r"^cuda:\d+$", request.device.strip()):
        errors.append("Device: with several processes choose 'cuda' (each process takes the GPU of its rank)")
    return processes, errors


def _avatars(spec: KindSpec, text: str) -> tuple[int | None, list[str]]:
    if not spec.avatars or not str(text).strip():
        return None, []
    try:
        value = int(str(text).strip())
    except ValueError:
        return None, [f"Avatars: expected a whole number or blank for all, got {text!r}"]
    return (value, []) if value >= 1 else (None, [f"Avatars: at least 1 (got {value})"])


def resume_argv(argv: list[str]) -> list[str]:
    """The launch command with --resume (once)."""
    return list(argv) if "--resume" in argv else [*argv, "--resume"]
