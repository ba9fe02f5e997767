"""Default configs of each kind of run, by name: what the studio's new-run form shows (fields, defaults, the
fields' docstrings). The studio reaches training only through `training.runs`; each config module is imported
only when asked for (they pull in torch and diffusers)."""
from __future__ import annotations

from typing import Any

CONFIG_KINDS = ("fit", "base", "upsample", "vae", "synth", "text", "lora")


def default_config(kind: str, preset: str = "tiny") -> Any:
    """The config instance `rodinhd` would use for this kind and preset before any --set."""
    if kind == "fit":
        from training.fit.config import FitConfig

        return FitConfig.preset(preset)
    if kind in ("base", "upsample"):
        from training.diffusion.config import DiffusionTrainConfig

        return DiffusionTrainConfig.for_stage(kind, preset)
    if kind == "vae":
        from training.vae.config import VAEConfig

        return VAEConfig.preset(preset)
    if kind == "synth":
        from training.synth.config import SynthConfig

        return SynthConfig.preset(preset)
    if kind == "text":
        from training.text.config import TextTrainConfig

        return TextTrainConfig.preset(preset if preset != "paper" else "tiny")  # as `rodinhd train --stage text`
    if kind == "lora":
        from training.text.lora import LoraTrainConfig

        return LoraTrainConfig()
    raise ValueError(f"unknown config kind {kind!r} (one of {', '.join(CONFIG_KINDS)})")
