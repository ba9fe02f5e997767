"""Where this process sits in a `torchrun` job (rank, world size) — one process when not under torchrun."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Placement:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        """Every world-th item starting at this rank (static, so every rank agrees without talking)."""
        return items[self.rank::self.world]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def init_from_env(device: str) -> Placement:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Placement()
    placement = Placement(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return placement


def device_for(placement: Placement, device: str) -> str:
    """cuda → cuda:<local rank> so each process on a machine gets its own GPU."""
    return f"cuda:{placement.local_rank}" if device == "cuda" and placement.world > 1 else device


def shutdown() -> None:
    """Leave the process group at the end of a command. Under gloo, destroy_process_group() sometimes hangs when
    the peer is already tearing down (pytorch/pytorch#75097), so CPU ranks just exit after a final barrier."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_backend() == "nccl":
        torch.distributed.destroy_process_group()


class StopFlag:
    """SIGTERM/SIGINT → flag, for ranks other than 0 (rank 0's Run handles its own signals)."""

    def __init__(self) -> None:
        self.set = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, *_):
        self.set = True
