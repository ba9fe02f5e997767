"""Model components on disk: a folder with `config.json` + one `*.safetensors` file (DESIGN.md "Models").

Weights are only ever read from safetensors; pickle-based files (.pt/.pth/.ckpt/.bin) are refused, never loaded.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import UserError
from engine.io import atomic_write, atomic_write_text, read_json

CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


def state_hash(tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict (names, dtypes, shapes, bytes): 16 hex digits. BatchNorm's
    `num_batches_tracked` counters are skipped: they never change an output and encoders do not store them."""
    digest = hashlib.sha256()
    for name in sorted(k for k in tensors if not k.endswith("num_batches_tracked")):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def save_component(folder: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                   weights_name: str = "model.safetensors", metadata: dict[str, str] | None = None) -> str:
    """Write `folder/config.json` and `folder/weights_name` atomically; returns the weights' content hash."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    digest = state_hash(tensors)
    meta = {"hash": digest, **(metadata or {})}
    atomic_write(folder / weights_name, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return digest


def read_component_config(folder: Path, what: str) -> dict[str, Any]:
    """`folder/config.json` as a dict, or one UserError naming the folder and the problem."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {what} here (missing {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON config ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


INDEX_FILE = "model_index.json"


def read_index(folder: Path, what: str) -> dict[str, Any]:
    """`folder/model_index.json` (a pipeline folder's index) as a dict, or one UserError naming the problem."""
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        raise UserError(f"{folder}: not a {what} folder (missing {INDEX_FILE})")
    try:
        index = read_json(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable index is the same user-facing problem
        raise UserError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(index, dict):
        raise UserError(f"{path}: expected a JSON object")
    return index


def load_weights(folder: Path, weights_name: str = "model.safetensors", what: str = "model",
                 device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read safetensors weights; refuse pickle formats with a clear message; name missing/corrupt files."""
    folder = Path(folder)
    path = folder / weights_name
    if not path.is_file():
        pickled = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise UserError(f"{folder}: {what} weights must be safetensors; refusing to unpickle {pickled[0]} "
                            "(convert it with safetensors.torch.save_file)")
        raise UserError(f"{folder}: no {what} weights (missing {weights_name})")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a valid safetensors file ({str(exc).splitlines()[0]})") from exc


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: Path | str) -> None:
    """`module.load_state_dict(tensors)` (strict) with a mismatch turned into one UserError."""
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise UserError(f"{where}: weights do not match the config ({first} {detail})".strip()) from exc


def safetensors_hash(path: Path) -> str | None:
    """The content hash recorded in a safetensors file's metadata (None when absent)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return (handle.metadata() or {}).get("hash")
