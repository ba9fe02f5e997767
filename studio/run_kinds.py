"""The kinds of training job the training tab can start, and how each maps onto the `rodinhd` command line.

Qt-free. A kind's config comes from `training.runs.kinds` (imported only when its form is built).
The studio reads these classes for their fields, defaults and docstrings only; it never trains in-process.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from training.runs.kinds import default_config


@dataclass(frozen=True)
class PathInput:
    """A folder the command needs, e.g. `--data DATASET`."""
    flag: str
    label: str
    tip: str
    must_be: str  # dataset | stage1_run | fit_run | text_model (what validation checks)


@dataclass(frozen=True)
class KindSpec:
    key: str
    label: str
    command: tuple[str, ...]              # the rodinhd verb and its fixed options
    inputs: tuple[PathInput, ...]
    presets: tuple[str, ...]
    make_config: Callable[[str], Any]     # preset name → config instance (the form's defaults)
    run_kinds: tuple[str, ...] = ()       # the `kind` its run folder's status.json records
    resumable: bool = True
    distributed: bool = False             # may run under torchrun with several processes
    device: bool = True                   # the command takes --device
    avatars: bool = True                  # the command takes --avatars K
    option_fields: dict[str, str] = field(default_factory=dict)  # field → dedicated flag (synth has no --set)
    launch_flags: tuple[str, ...] = ()    # always added to the command
    done_marker: str | None = None        # kinds without a run folder: the file written when the job is done
    total_field: str | None = None        # kinds without a run folder: the field that counts the work
    note: str = ""

    @property
    def uses_set(self) -> bool:
        return not self.option_fields


_fit_config = partial(default_config, "fit")
_vae_config = partial(default_config, "vae")
_synth_config = partial(default_config, "synth")
_text_config = partial(default_config, "text")
_lora_config = partial(default_config, "lora")


def _diffusion_config(role: str) -> Callable[[str], Any]:
    return partial(default_config, role)


DATA = PathInput("--data", "Dataset", "A dataset folder made by `rodinhd synth` or `rodinhd data import`", "dataset")
KINDS: dict[str, KindSpec] = {spec.key: spec for spec in (
    KindSpec("synth", "synth data", ("synth",), (), ("tiny", "paper"), _synth_config,
             device=False, avatars=False,
             option_fields={"count": "--count", "views": "--views", "test_views": "--test-views",
                            "resolution": "--resolution", "seed": "--seed", "workers": "--workers"},
             # the folder already holds launch.json/launch.log; --resume accepts that and, with no earlier
             # synth_config.json, generates every avatar
             launch_flags=("--resume",), done_marker="index.json", total_field="count",
             note="The output folder becomes the dataset."),
    KindSpec("fit1", "fit stage 1", ("fit", "--stage", "1"), (DATA,), ("tiny", "paper"), _fit_config,
             run_kinds=("fit_stage1",), note="Shared decoder + triplanes (task replay + IWC)."),
    KindSpec("fit2", "fit stage 2", ("fit", "--stage", "2"),
             (DATA, PathInput("--decoder", "Stage-1 run", "A finished `fit stage 1` run folder (its decoder is "
                                                          "frozen)", "stage1_run")),
             ("tiny", "paper"), _fit_config, run_kinds=("fit_stage2",), distributed=True,
             note="One triplane per avatar with the decoder frozen; several processes shard the avatars."),
    KindSpec("vae", "vae", ("train", "--stage", "vae"), (DATA,), ("tiny", "paper"), _vae_config,
             run_kinds=("vae",), note="The portrait VAE (its encoder can condition the diffusion stages)."),
    KindSpec("base", "base", ("train", "--stage", "base"),
             (DATA, PathInput("--triplanes", "Fit run", "A `fit` run folder (stage 2, or stage 1) fitted on the "
                                                        "dataset", "fit_run")),
             ("tiny", "paper"), _diffusion_config("base"), run_kinds=("diffusion_base",), distributed=True,
             note="The base triplane diffusion stage (DDP with several processes)."),
    KindSpec("upsample", "upsample", ("train", "--stage", "upsample"),
             (DATA, PathInput("--triplanes", "Fit run", "A `fit` run folder (stage 2, or stage 1) fitted on the "
                                                        "dataset", "fit_run")),
             ("tiny", "paper"), _diffusion_config("upsample"), run_kinds=("diffusion_upsample",), distributed=True,
             note="The upsampling diffusion stage (DDP with several processes)."),
    KindSpec("text", "text", ("train", "--stage", "text"), (DATA,), ("tiny", "paper"), _text_config,
             run_kinds=("text",), avatars=False, done_marker="train_info.json", total_field="steps",
             note="The text → portrait model (into OUT/model)."),
    KindSpec("lora", "lora", ("train", "--stage", "lora"),
             (DATA, PathInput("--base", "Text model", "The text model folder to finetune", "text_model")),
             ("tiny",), _lora_config, resumable=False, device=False, done_marker="lora_info.json",
             total_field="steps", note="A LoRA of a text model (into OUT/lora.safetensors)."),
)}

# status.json kinds → the studio's kind keys
KIND_BY_RUN_KIND = {run_kind: spec.key for spec in KINDS.values() for run_kind in spec.run_kinds}


def kind_label(key_or_run_kind: str | None) -> str:
    """`fit_stage1` or `fit1` → "fit stage 1"; an unknown kind as it is."""
    if key_or_run_kind is None:
        return "?"
    key = KIND_BY_RUN_KIND.get(key_or_run_kind, key_or_run_kind)
    return KINDS[key].label if key in KINDS else key_or_run_kind
