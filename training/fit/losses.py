"""Fitting losses: photometric MSE, triplane regularisers, and identity-aware weight consolidation (Eq. 3)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from engine.io import atomic_write
from engine.triplane import total_variation
from training.fit.config import FitConfig


def triplane_regularisers(planes: torch.Tensor, config: FitConfig) -> torch.Tensor:
    """TV + L1 + L2 on the triplane values (weights from the config; zero weights cost nothing)."""
    total = planes.new_zeros(())
    if config.tv_weight:
        total = total + config.tv_weight * total_variation(planes)
    if config.l1_weight:
        total = total + config.l1_weight * planes.abs().mean()
    if config.l2_weight:
        total = total + config.l2_weight * planes.pow(2).mean()
    return total


@dataclass
class IWCState:
    """One avatar's consolidation state {Ω^s, ω^{s,*}}: diagonal Fisher and anchor weights of the decoder."""

    fisher: dict[str, torch.Tensor]
    anchor: dict[str, torch.Tensor]

    def penalty(self, decoder: torch.nn.Module, weight: float) -> torch.Tensor:
        """λ/2 Σ_i Ω_i (ω_i − ω*_i)² (Eq. 3): zero at the anchor, grows with drift on important weights."""
        total = None
        for name, param in decoder.named_parameters():
            term = (self.fisher[name] * (param - self.anchor[name]).pow(2)).sum()
            total = term if total is None else total + term
        return 0.5 * weight * total

    @classmethod
    def estimate(cls, decoder: torch.nn.Module, batch_loss: Callable[[], torch.Tensor], batches: int,
                 normalise: bool = True) -> "IWCState":
        """Ω = mean over `batches` ray batches of the squared gradient of the rendering loss w.r.t. the decoder.

        Averaging several batches (not the authors' single last batch) lowers the estimate's noise. With
        `normalise`, Ω is scaled to mean 1 so λ does not depend on the loss scale.
        """
        params = dict(decoder.named_parameters())
        fisher = {name: torch.zeros_like(p) for name, p in params.items()}
        for _ in range(batches):
            grads = torch.autograd.grad(batch_loss(), list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads):
                if grad is not None:
                    fisher[name] += grad.detach().pow(2) / batches
        if normalise:
            mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp(min=1e-20)
            fisher = {name: f / mean for name, f in fisher.items()}
        anchor = {name: p.detach().clone() for name, p in params.items()}
        return cls(fisher, anchor)

    def save(self, path: Path) -> None:
        tensors = {f"fisher.{k}": v.cpu().contiguous() for k, v in self.fisher.items()}
        tensors.update({f"anchor.{k}": v.cpu().contiguous() for k, v in self.anchor.items()})
        atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp)))

    @classmethod
    def load(cls, path: Path, device="cpu") -> "IWCState":
        tensors = load_file(str(path), device=str(device))
        split = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        return cls(split("fisher."), split("anchor."))
