"""Stage 2, batched: K avatars' triplanes fitted at once, as one [K, 3, C, R, R] tensor.

Every step samples rays from all K avatars and decodes all their samples in one pass (one grid_sample over the
K·3 planes, each avatar's own occupancy grid skipping its empty space). Each avatar keeps what it would have
alone: its seed and random draws, its Adam state and step count, its lr schedule and loss guard, so a fit does
not depend on the batch size. An avatar leaves its slot when its steps are done, or early once its probe PSNR
stops rising (`stage2_plateau_db`); the slot takes the next avatar.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from engine.decoder import TriplaneDecoder
from engine.render import OccupancyGrid, Rays, render_rays
from engine.render.occupancy import OccupancyStack
from engine.render.volume import Field, render_field, stratified_jitter
from engine.triplane import sample_triplanes
from training.fit.config import FitConfig
from training.fit.data import AvatarViews, RaySampler, load_views
from training.fit.losses import triplane_regularisers
from training.fit.stage2 import AvatarResult, finish_avatar, initial_triplane, stage2_lr
from training.fit.step import empty_points, step_opacity
from training.runs import LossGuard, RunStopped

PROBE_SEED = 7_919  # the probe rays of an avatar are the same whatever its fitting seed


class SlotAdam:
    """Adam on a [K, ...] parameter whose slots are separate problems: each has its own step count and lr,
    and a slot restarts (a new avatar) without touching the others. Per slot it is torch's Adam."""

    def __init__(self, param: torch.Tensor, betas=(0.9, 0.99), eps: float = 1e-15) -> None:
        self.param, self.betas, self.eps = param, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = [0] * param.shape[0]

    def reset(self, slot: int) -> None:
        self.exp_avg[slot].zero_()
        self.exp_avg_sq[slot].zero_()
        self.steps[slot] = 0

    @torch.no_grad()
    def step(self, lrs: dict[int, float]) -> None:
        """One update of the slots in `lrs` (slot → lr); the others do not move."""
        beta1, beta2 = self.betas
        for slot, lr in lrs.items():
            self.steps[slot] += 1
            n, grad = self.steps[slot], self.param.grad[slot]
            exp_avg, exp_avg_sq = self.exp_avg[slot], self.exp_avg_sq[slot]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** n)).add_(self.eps)
            self.param[slot].addcdiv_(exp_avg, denom, value=-lr / (1 - beta1 ** n))


@dataclass(eq=False)
class _Slot:
    """One avatar in flight."""

    folder: Path
    views: AvatarViews
    occupancy: OccupancyGrid | None
    sampler: RaySampler
    generator: torch.Generator
    probe: tuple[Rays, torch.Tensor]
    start: float
    step: int = 0
    guard: LossGuard = field(default_factory=LossGuard)
    probe_psnr: list[float] = field(default_factory=list)


def probe_rays(views: AvatarViews, count: int) -> tuple[Rays, torch.Tensor]:
    """A fixed set of the avatar's training rays (its own seed) used to tell when a fit has stopped improving."""
    return RaySampler(views, torch.Generator().manual_seed(PROBE_SEED)).sample(count)


class BatchedFit:
    """K slots of avatars fitted together. `run(jobs)` fits (folder, seed) pairs and writes each when done."""

    def __init__(self, decoder: TriplaneDecoder, config: FitConfig, out: Path, warm: torch.Tensor | None = None,
                 slots: int | None = None, probe_count: int = 1024) -> None:
        """`slots`: how many avatars at once (default: the config's batch_avatars; fewer when fewer are left)."""
        self.decoder, self.config, self.out, self.warm = decoder, config, Path(out), warm
        self.probe_count = probe_count
        k, c, r = slots or config.batch_avatars, config.channels, config.triplane_resolution
        self.planes = torch.nn.Parameter(torch.zeros(k, 3, c, r, r, device=config.device))
        self.adam = SlotAdam(self.planes)
        self.slots: list[_Slot | None] = [None] * k
        grid = config.occupancy_size
        self.occupied = (OccupancyStack(torch.zeros(k, grid, grid, grid, dtype=torch.bool, device=config.device),
                                        config.render.bound) if grid > 0 else None)

    def run(self, jobs: list[tuple[Path, int]], on_done: Callable[[AvatarResult], None] = lambda r: None,
            should_stop: Callable[[], bool] = lambda: False) -> list[AvatarResult]:
        queue, done = deque(jobs), []
        while True:
            self._fill(queue)
            if not any(self.slots):
                return done
            if should_stop():
                names = ", ".join(s.folder.name for s in self.slots if s)
                raise RunStopped(f"stopped while fitting {names}")
            self._step()
            for index, slot in enumerate(self.slots):
                if slot is not None and self._finished(index, slot):
                    done.append(self._finish(index))
                    on_done(done[-1])

    # ---- slots -------------------------------------------------------------------------------------------
    def _fill(self, queue: deque) -> None:
        for index, slot in enumerate(self.slots):
            if slot is None and queue:
                folder, seed = queue.popleft()
                self.slots[index] = self._load(index, Path(folder), seed)

    def _load(self, index: int, folder: Path, seed: int) -> _Slot:
        views = load_views(folder).to(self.config.device)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # the same first draws as the per-avatar path: the initial triplane, then rays
            self.planes[index] = initial_triplane(self.config, generator, self.warm)
        self.adam.reset(index)
        occupancy = views.occupancy(self.config.occupancy_size)
        if self.occupied is not None:
            self.occupied.occupied[index] = occupancy.occupied
        return _Slot(folder, views, occupancy, RaySampler(views, generator), generator,
                     probe_rays(views, self.probe_count), time.perf_counter())

    def _finished(self, index: int, slot: _Slot) -> bool:
        config = self.config
        if slot.step >= config.stage2_steps:
            return True
        if not config.stage2_plateau_db or slot.step % config.stage2_check_every:
            return False
        slot.probe_psnr.append(self._probe(index, slot))
        gained = slot.probe_psnr[-1] - slot.probe_psnr[-2] if len(slot.probe_psnr) > 1 else math.inf
        return slot.step >= config.stage2_min_steps and gained < config.stage2_plateau_db

    @torch.no_grad()
    def _probe(self, index: int, slot: _Slot) -> float:
        rays, target = slot.probe
        rgb = render_rays(self.planes[index], self.decoder, rays, self.config.render, slot.occupancy).rgb
        return -10.0 * math.log10(max(float((rgb - target).pow(2).mean()), 1e-12))

    def _finish(self, index: int) -> AvatarResult:
        slot = self.slots[index]
        planes = self.planes[index].detach().clone()
        self.slots[index] = None
        self.adam.reset(index)
        return finish_avatar(slot.folder, planes, self.decoder, self.config, self.out, slot.start, slot.step)

    # ---- one step over every slot --------------------------------------------------------------------------
    def _step(self) -> None:
        active = [i for i, s in enumerate(self.slots) if s is not None]
        rays, targets, jitter, ray_slot = self._sample_rays(active)
        render = render_field(self._field(ray_slot), self.decoder, rays, self.config.render, jitter=jitter,
                              generator=self.slots[active[0]].generator)
        per_ray = (render.rgb - targets).pow(2).mean(-1)
        mse = _segment_mean(per_ray, ray_slot, len(self.slots))
        empty = self._emptiness(active)
        losses = {}
        for i in active:
            losses[i] = mse[i] + triplane_regularisers(self.planes[i], self.config) + \
                self.config.empty_weight * empty[i]
        self.planes.grad = None
        torch.stack(list(losses.values())).sum().backward()
        lrs = {}
        for i in active:
            slot = self.slots[i]
            slot.guard.check(slot.step, losses[i].detach())
            lrs[i] = stage2_lr(self.config, slot.step)
            slot.step += 1
        self.adam.step(lrs)

    def _sample_rays(self, active: list[int]):
        config, parts = self.config, []
        for i in active:  # per avatar, the order of the per-avatar path: its rays, then its jitter
            rays, target = self.slots[i].sampler.sample(config.rays_per_step)
            parts.append((rays, target, stratified_jitter(len(rays), config.render, self.slots[i].generator)))
        rays = Rays(torch.cat([p[0].origins for p in parts]), torch.cat([p[0].directions for p in parts]))
        ray_slot = torch.tensor(active, device=rays.origins.device).repeat_interleave(config.rays_per_step)
        return rays, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), ray_slot

    def _field(self, ray_slot: torch.Tensor) -> Field:
        aggregate = self.decoder.config.aggregate
        occupied = None
        if self.occupied is not None:
            occupied = lambda points: self.occupied.lookup(points, ray_slot[:, None])  # noqa: E731
        return Field(lambda points, ray: sample_triplanes(self.planes, points, ray_slot[ray], aggregate), occupied)

    def _emptiness(self, active: list[int]) -> torch.Tensor:
        """Per slot, the emptiness loss of the per-avatar path (mean opacity at random points outside the hull)."""
        config = self.config
        zeros = self.planes.new_zeros(len(self.slots))
        if self.occupied is None or not config.empty_weight:
            return zeros
        points = [empty_points(self.slots[i].occupancy, config, self.slots[i].generator, self.planes.device)
                  for i in active]
        owner = torch.cat([torch.full((len(p),), i, device=p.device, dtype=torch.long) for i, p in zip(active, points)])
        points = torch.cat(points)
        if not len(points):
            return zeros
        sigma, _ = self.decoder.density(sample_triplanes(self.planes, points, owner, self.decoder.config.aggregate))
        return _segment_mean(step_opacity(sigma, config), owner, len(self.slots))


def _segment_mean(values: torch.Tensor, index: torch.Tensor, count: int) -> torch.Tensor:
    """Mean of `values` per index in [0, count) (0 where an index has none)."""
    total = values.new_zeros(count).index_add(0, index, values)
    n = torch.bincount(index, minlength=count).clamp(min=1).to(values.dtype)
    return total / n
