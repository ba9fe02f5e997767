"""`checkpoints/NAME.safetensors`: tensors plus JSON metadata, written atomically (temp file, then os.replace).
Step-numbered names (`step_000100`) are pruned to the newest `keep_last`; other names are never pruned."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import UserError
from engine.io import atomic_write
from training.runs.jsonsafe import json_safe

if TYPE_CHECKING:
    import torch

SUFFIX = ".safetensors"
META_KEY = "rodinhd.meta"
STEP_NAME = re.compile(r"^step_(\d+)$")
VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def step_checkpoint_name(step: int) -> str:
    """The conventional name of the checkpoint saved at `step` (`step_000100`)."""
    return f"step_{int(step):06d}"


def checkpoint_step(name: str) -> int | None:
    """The step encoded in a step-numbered name, else None."""
    match = STEP_NAME.match(name)
    return int(match.group(1)) if match else None


class CheckpointStore:
    """The checkpoints of one run folder."""

    def __init__(self, folder: Path, keep_last: int | None = 3) -> None:
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be ≥ 1 or None (keep all), got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    def path(self, name: str) -> Path:
        if not VALID_NAME.match(name) or name.endswith(SUFFIX):
            raise ValueError(f"bad checkpoint name {name!r}: use letters, digits, '_', '-', '.' (no suffix)")
        return self.folder / f"{name}{SUFFIX}"

    def names(self) -> list[str]:
        """Every complete checkpoint, step-numbered ones by step, then the others by name."""
        if not self.folder.is_dir():
            return []
        found = [p.name[: -len(SUFFIX)] for p in self.folder.glob(f"*{SUFFIX}") if not p.name.startswith(".")]
        return sorted(found, key=lambda n: (checkpoint_step(n) is None, checkpoint_step(n) or 0, n))

    def latest(self) -> str | None:
        """The step-numbered checkpoint with the highest step; without any, the most recently written one."""
        names = self.names()
        stepped = [n for n in names if checkpoint_step(n) is not None]
        if stepped:
            return stepped[-1]
        if not names:
            return None
        return max(names, key=lambda n: (self.path(n).stat().st_mtime_ns, n))

    def save(self, name: str, tensors: dict[str, "torch.Tensor"], meta: dict[str, Any] | None = None) -> Path:
        """Write NAME.safetensors atomically with `meta` as JSON metadata, then prune old step checkpoints."""
        import safetensors.torch

        path = self.path(name)
        cpu = {str(k): t.detach().to("cpu").contiguous() for k, t in tensors.items()}
        metadata = {META_KEY: json.dumps(json_safe(meta or {}, "meta"), allow_nan=False)}
        atomic_write(path, lambda tmp: safetensors.torch.save_file(cpu, str(tmp), metadata=metadata))
        if checkpoint_step(name) is not None:
            self.prune()
        return path

    def load(self, name: str, device: str = "cpu") -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
        """(tensors, meta) of one checkpoint; a missing or unreadable file is a UserError."""
        from safetensors import safe_open

        path = self.path(name)
        if not path.is_file():
            have = ", ".join(self.names()) or "none"
            raise UserError(f"no checkpoint {name!r} in {self.folder} (available: {have})")
        try:
            with safe_open(str(path), framework="pt", device=device) as f:
                metadata = f.metadata() or {}
                tensors = {key: f.get_tensor(key) for key in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise UserError(f"cannot read checkpoint {path}: {exc}") from exc
        return tensors, json.loads(metadata.get(META_KEY, "{}"))

    def prune(self) -> list[str]:
        """Delete step-numbered checkpoints beyond the newest `keep_last`; returns the names removed."""
        if self.keep_last is None:
            return []
        stepped = [n for n in self.names() if checkpoint_step(n) is not None]
        doomed = stepped[: max(0, len(stepped) - self.keep_last)]
        for name in doomed:
            self.path(name).unlink(missing_ok=True)
        return doomed
