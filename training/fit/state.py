"""Per-avatar stage-1 state on disk (so the number of avatars is not bounded by memory), and optimizer state
as plain tensors (checkpoints are safetensors: no pickled optimizer dicts)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.io import atomic_write
from engine.render import OccupancyGrid
from engine.weights import load_state_into
from training.fit.losses import IWCState
from training.runs.checkpoints import step_checkpoint_name


class AvatarStateStore:
    """state/<avatar>.planes.safetensors (fp32 triplane), .iwc.safetensors, .occupancy.safetensors."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, avatar: str, what: str) -> Path:
        return self.folder / f"{avatar}.{what}.safetensors"

    def load_planes(self, avatar: str, device) -> torch.Tensor | None:
        path = self._path(avatar, "planes")
        return load_file(str(path), device=str(device))["planes"] if path.exists() else None

    def save_planes(self, avatar: str, planes: torch.Tensor) -> None:
        tensor = planes.detach().to("cpu", torch.float32).contiguous()
        atomic_write(self._path(avatar, "planes"), lambda tmp: save_file({"planes": tensor}, str(tmp)))

    def load_iwc(self, avatar: str, device) -> IWCState | None:
        path = self._path(avatar, "iwc")
        return IWCState.load(path, device) if path.exists() else None

    def save_iwc(self, avatar: str, state: IWCState) -> None:
        state.save(self._path(avatar, "iwc"))

    def occupancy(self, avatar: str, build, device) -> OccupancyGrid | None:
        """The avatar's occupancy grid on `device`, carved once by `build()` and cached on disk."""
        path = self._path(avatar, "occupancy")
        if path.exists():  # on the fitting device: a CPU grid indexed by CUDA points fails on the second visit
            return OccupancyGrid(load_file(str(path), device=str(device))["occupied"].bool())
        grid = build()
        if grid is not None:  # None: occupancy_size 0, no empty-space skipping
            occupied = grid.occupied.to("cpu", torch.uint8).contiguous()
            atomic_write(path, lambda tmp: save_file({"occupied": occupied}, str(tmp)))
        return grid


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "opt") -> dict[str, torch.Tensor]:
    """Adam-style state (step, exp_avg, exp_avg_sq per parameter) flattened to named tensors."""
    tensors = {}
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            tensors[f"{prefix}.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           prefix: str = "opt") -> None:
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        state = {key.split(".")[-1]: value.to(param.device) for key, value in tensors.items()
                 if key.startswith(f"{prefix}.{i}.")}
        if state:
            if "step" in state:
                state["step"] = state["step"].cpu().float()  # Adam keeps its step count on the CPU
            optimizer.state[param] = state


def save_run_checkpoint(run, step: int, modules: dict[str, torch.nn.Module], optimizer) -> str:
    """Checkpoint `modules` ("<key>.<param>" tensors), the optimizer ("optim.*") and the step into `run`; returns
    the checkpoint's name (the trainers of the VAE and the text model share this layout)."""
    tensors = {f"{key}.{k}": v for key, module in modules.items() for k, v in module.state_dict().items()}
    tensors.update(optimizer_tensors(optimizer, prefix="optim"))
    name = step_checkpoint_name(step)
    run.save_checkpoint(name, tensors, {"step": step})
    return name


def restore_run_checkpoint(run, modules: dict[str, torch.nn.Module], optimizer, device) -> int | None:
    """Load the run's latest checkpoint (save_run_checkpoint's layout) into `modules` and `optimizer`; returns its
    step, or None when the run has no checkpoint."""
    name = run.latest_checkpoint()
    if name is None:
        return None
    tensors, meta = run.load_checkpoint(name, str(device))
    for key, module in modules.items():
        prefix = f"{key}."
        load_state_into(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                        run.checkpoints_dir / name)
    load_optimizer_tensors(optimizer, tensors, prefix="optim")
    step = int(meta["step"])
    run.log(f"resumed from checkpoint {name} (step {step})")
    return step
