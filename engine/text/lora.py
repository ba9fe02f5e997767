"""LoRA adapters for the text → portrait UNet (peft), stored as safetensors only.

Training (training/text/*):
    add_lora(unet, rank=8, alpha=8)            # adds the trainable adapter "rodinhd_lora" to to_q/to_k/to_v/to_out.0
    ... train the lora_A / lora_B parameters ...
    save_lora(unet, "style.safetensors", rank=8, alpha=8, trigger="sks style")

Sampling: `TextPortraitPipeline.load_lora(path, scale)` (→ `load_lora`). A file holds the tensors of
`peft.get_peft_model_state_dict(unet)` (keys like `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A
.weight`) and string metadata: format, format_version, rank, alpha, target_modules (JSON list), base_hash (the
base UNet's weights hash, `unet_hash`), trigger (or ""), hash (of the tensors). Pickle formats are never read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.errors import UserError
from engine.io import atomic_write
from engine.weights import PICKLE_SUFFIXES, state_hash

ADAPTER = "rodinhd_lora"
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
LORA_FORMAT = "rodinhd-text-lora"
LORA_FORMAT_VERSION = 1
SCALE_RANGE = (0.0, 2.0)


def unet_hash(unet: torch.nn.Module) -> str:
    """Hash of the base UNet weights: the same with or without a LoRA adapter attached (lora_* tensors skipped,
    peft's `.base_layer.` names mapped back)."""
    tensors = {k.replace(".base_layer.", "."): v for k, v in unet.state_dict().items() if ".lora_" not in k}
    return state_hash(tensors)


def add_lora(unet: torch.nn.Module, rank: int, alpha: float, *, init_lora_weights: bool | str = True,
             target_modules: tuple[str, ...] | list[str] = TARGET_MODULES) -> None:
    """Attach (and activate) the adapter `ADAPTER` to a diffusers UNet. With the default init (B = 0) the output is
    unchanged until trained; only the LoRA parameters are left trainable if the caller freezes the base first."""
    from peft import LoraConfig

    if int(rank) < 1:
        raise UserError(f"LoRA rank must be at least 1 (got {rank})")
    if float(alpha) <= 0:
        raise UserError(f"LoRA alpha must be positive (got {alpha})")
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=list(target_modules),
                        init_lora_weights=init_lora_weights)
    unet.add_adapter(config, adapter_name=ADAPTER)
    unet.set_adapter(ADAPTER)


def lora_state(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(unet, adapter_name=ADAPTER)


def save_lora(unet: torch.nn.Module, path: str | Path, *, rank: int, alpha: float, trigger: str | None = None,
              base_hash: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter `ADAPTER` of `unet` to `path` (.safetensors, atomically). `base_hash` defaults to
    `unet_hash(unet)`. `extra`: more metadata (values are JSON-encoded unless strings). Returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise UserError(f"{path}: LoRA files are written as .safetensors")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in lora_state(unet).items()}
    if not tensors:
        raise UserError("this UNet has no LoRA adapter to save (call add_lora first)")
    config = unet.peft_config[ADAPTER]
    metadata = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (extra or {}).items()}
    metadata.update({
        "format": LORA_FORMAT, "format_version": str(LORA_FORMAT_VERSION), "rank": str(int(rank)),
        "alpha": repr(float(alpha)), "target_modules": json.dumps(sorted(config.target_modules)),
        "base_hash": base_hash or unet_hash(unet), "trigger": trigger or "", "hash": state_hash(tensors)})
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a LoRA file; anything but a readable .safetensors file is one UserError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(f"{path}: LoRA files must be .safetensors; refusing to unpickle a {path.suffix} file "
                        "(convert it with safetensors.torch.save_file)")
    if path.suffix.lower() != ".safetensors":
        raise UserError(f"{path}: not a LoRA file (expected .safetensors)")
    if not path.is_file():
        raise UserError(f"{path}: no such LoRA file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a valid safetensors file ({str(exc).splitlines()[0]})") from exc
    return tensors, metadata


def lora_record(path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor], scale: float) -> dict:
    """JSON-able description (what `pipe.lora_info` returns and the CLI records)."""
    return {"path": str(path), "name": Path(path).stem, "scale": float(scale),
            "hash": metadata.get("hash") or state_hash(tensors), "rank": _int(metadata.get("rank")),
            "alpha": _float(metadata.get("alpha")), "trigger": metadata.get("trigger") or None,
            "base_hash": metadata.get("base_hash") or None, "format": LORA_FORMAT if metadata.get("format") == LORA_FORMAT else "external"}


def check_scale(scale: float) -> float:
    lo, hi = SCALE_RANGE
    if not lo <= float(scale) <= hi:
        raise UserError(f"LoRA scale must be between {lo:g} and {hi:g} (got {scale})")
    return float(scale)


def load_lora(unet: torch.nn.Module, path: str | Path, scale: float = 1.0) -> tuple[dict, dict[str, torch.Tensor]]:
    """Attach the LoRA in `path` to `unet` (replacing any earlier one) at `scale`. Returns (record, tensors).
    A file whose tensors do not fit this UNet (names or shapes) is refused and the UNet is left without adapter."""
    scale = check_scale(scale)
    path = Path(path)
    tensors, meta = read_lora(path)
    attach_lora(unet, tensors, meta, scale, path)
    return lora_record(path, meta, tensors, scale), tensors


def attach_lora(unet: torch.nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, str], scale: float,
                where: Path | str) -> None:
    from peft import set_peft_model_state_dict

    if not tensors or not all(".lora_" in k for k in tensors):
        raise UserError(f"{where}: not a LoRA file (no lora_A/lora_B tensors)")
    rank = _int(meta.get("rank")) or _guess_rank(tensors)
    alpha = _float(meta.get("alpha")) or float(rank)
    try:
        targets = json.loads(meta["target_modules"]) if meta.get("target_modules") else list(TARGET_MODULES)
    except json.JSONDecodeError:
        targets = list(TARGET_MODULES)
    remove_lora(unet)
    try:
        add_lora(unet, rank, alpha, target_modules=targets)
    except (ValueError, KeyError) as exc:  # peft: target modules not found in this model
        remove_lora(unet)
        raise UserError(f"{where}: this LoRA does not fit this model ({str(exc).splitlines()[0]})") from exc
    expected = {k: tuple(v.shape) for k, v in lora_state(unet).items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        remove_lora(unet)
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        shape = [k for k in set(expected) & set(found) if expected[k] != found[k]]
        detail = (f"{len(missing)} missing" + (f" (e.g. {missing[0]})" if missing else "") + f", {len(extra)} unknown"
                  + (f" (e.g. {extra[0]})" if extra else "") + f", {len(shape)} of another shape")
        raise UserError(f"{where}: this LoRA was made for a different model: {detail}")
    param = next(unet.parameters())
    set_peft_model_state_dict(unet, {k: v.to(param.device, param.dtype) for k, v in tensors.items()},
                              adapter_name=ADAPTER)
    set_lora_scale(unet, scale)


def set_lora_scale(unet: torch.nn.Module, scale: float) -> None:
    unet.set_adapters([ADAPTER], weights=[check_scale(scale)])


def remove_lora(unet: torch.nn.Module) -> None:
    """Take every adapter off (the UNet is back to its plain modules; a no-op without one)."""
    if getattr(unet, "peft_config", None):
        unet.unload_lora()


def has_lora(unet: torch.nn.Module) -> bool:
    return bool(getattr(unet, "peft_config", None))


def _guess_rank(tensors: dict[str, torch.Tensor]) -> int:
    first = next(v for k, v in tensors.items() if ".lora_A" in k)
    return int(first.shape[0])


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


__all__ = ["ADAPTER", "TARGET_MODULES", "add_lora", "save_lora", "load_lora", "read_lora", "remove_lora",
           "attach_lora", "set_lora_scale", "unet_hash", "lora_state", "has_lora", "check_scale"]
