"""Stage 1 (Sec. 3.1, Algorithm 1): the shared decoder and K triplanes, fitted with task replay and IWC.

Schedules (`FitConfig.mode`), all with the same total number of steps:
  naive       each avatar visited once for epochs × inner_steps steps (the forgetting-prone baseline)
  replay      `epochs` passes over all avatars, `inner_steps` per visit (task replay)
  replay_iwc  task replay + identity-aware weight consolidation (Eq. 3), state {Ω^s, ω^{s,*}} per avatar

Triplanes and IWC states live on disk between visits. After every visit the run logs the held-out PSNR of
every avatar seen so far, with the current decoder: the forgetting curves of Fig. 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.decoder import TriplaneDecoder, decoder_hash, save_decoder
from engine.io import atomic_write_json
from engine.triplane import init_triplane, save_triplane
from training.fit.config import FitConfig
from training.fit.data import AvatarViews, RaySampler, load_eval_views, load_views
from training.fit.evaluate import evaluate
from training.fit.losses import IWCState
from training.fit.state import AvatarStateStore, load_optimizer_tensors, optimizer_tensors
from training.fit.step import decoder_optimizer, fit_step, rendering_loss, triplane_optimizer
from training.runs import LossGuard, Run, RunStopped

KIND = "fit_stage1"
CHECKPOINT = "latest"
LOG_EVERY = 10


@dataclass(frozen=True)
class Visit:
    epoch: int
    avatar: int
    steps: int


def schedule(config: FitConfig, avatars: int) -> list[Visit]:
    if config.mode == "naive":
        return [Visit(0, i, config.epochs * config.inner_steps) for i in range(avatars)]
    return [Visit(e, i, config.inner_steps) for e in range(config.epochs) for i in range(avatars)]


class Stage1:
    def __init__(self, avatars: list[Path], run: Run, config: FitConfig) -> None:
        self.avatars, self.run, self.config = avatars, run, config
        self.device = torch.device(config.device)
        with torch.random.fork_rng(devices=[]):  # the decoder's initial weights follow config.seed
            torch.manual_seed(config.seed)
            self.decoder = TriplaneDecoder(config.decoder).to(self.device)
        self.decoder_opt = decoder_optimizer(self.decoder, config.decoder_lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.store = AvatarStateStore(run.path / "state")
        self.guard = LossGuard()
        self.visits = schedule(config, len(avatars))
        self.next_visit, self.step = 0, 0
        self._eval_views: dict[str, AvatarViews] = {}

    # ---- checkpoints: decoder, its optimizer, the schedule position and the ray-sampling generator ----
    def save(self) -> None:
        tensors = {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}
        tensors.update(optimizer_tensors(self.decoder_opt))
        tensors["rng"] = self.generator.get_state()
        self.run.save_checkpoint(CHECKPOINT, tensors, {"next_visit": self.next_visit, "step": self.step})

    def restore(self) -> None:
        if self.run.latest_checkpoint() is None:
            return
        tensors, meta = self.run.load_checkpoint(CHECKPOINT, str(self.device))
        self.decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})
        load_optimizer_tensors(self.decoder_opt, tensors)
        self.generator.set_state(tensors["rng"].cpu())
        self.next_visit, self.step = int(meta["next_visit"]), int(meta["step"])
        self.run.log(f"resumed at visit {self.next_visit}/{len(self.visits)}, step {self.step}")

    # ---- the loop ----
    def fit(self) -> None:
        total = sum(v.steps for v in self.visits)
        while self.next_visit < len(self.visits):
            self._visit(self.visits[self.next_visit])
            self.next_visit += 1
            self.save()
            self._log_forgetting()
            self.run.progress(self.step, total)
        self._finish()

    def _visit(self, visit: Visit) -> None:
        cfg, name = self.config, self.avatars[visit.avatar].name
        views = load_views(self.avatars[visit.avatar]).to(self.device)
        occupancy = self.store.occupancy(name, lambda: views.occupancy(cfg.occupancy_size), self.device)
        planes = self.store.load_planes(name, self.device)
        if planes is None:
            planes = init_triplane(cfg.channels, cfg.triplane_resolution, std=cfg.triplane_init_std,
                                   generator=self.generator, device=self.device)
        planes = torch.nn.Parameter(planes)
        iwc = self.store.load_iwc(name, self.device) if cfg.mode == "replay_iwc" else None
        # the authors give the triplane a fresh Adam per visit, with lr0 / (10·epoch + 1)
        lr = cfg.triplane_lr / (cfg.replay_lr_decay * visit.epoch + 1)
        optimizers = [triplane_optimizer(planes, lr), self.decoder_opt]
        sampler = RaySampler(views, self.generator)
        self.guard.reset()  # switching avatars legitimately jumps the loss
        for _ in range(visit.steps):
            if self.run.stop_requested:
                raise RunStopped("stopped by signal")  # state on disk is the last completed visit
            self._decay_decoder_lr()
            result = fit_step(planes, self.decoder, sampler, occupancy, cfg, optimizers, self.generator, iwc)
            self.guard.check(self.step, result.loss)
            self.step += 1
            if self.step % LOG_EVERY == 0:
                self.run.log_metrics(self.step, loss=result.loss, psnr=result.psnr, avatar=name, epoch=visit.epoch)
        if cfg.mode == "replay_iwc":
            loss = lambda: rendering_loss(planes, self.decoder, sampler, occupancy, cfg, self.generator)[0]  # noqa: E731
            self.store.save_iwc(name, IWCState.estimate(self.decoder, loss, cfg.fisher_batches))
        self.store.save_planes(name, planes)

    def _decay_decoder_lr(self) -> None:
        if self.config.decoder_lr_decay_steps:
            lr = self.config.decoder_lr * 0.1 ** (self.step / self.config.decoder_lr_decay_steps)
            for group in self.decoder_opt.param_groups:
                group["lr"] = lr

    def _log_forgetting(self) -> None:
        """Held-out PSNR of every avatar seen so far, with the current decoder (Fig. 2)."""
        seen = evenly_spaced(sorted({v.avatar for v in self.visits[: self.next_visit]}),
                             self.config.forgetting_avatars)
        scores = {}
        for i in seen:
            name = self.avatars[i].name
            if name not in self._eval_views:
                self._eval_views[name] = load_eval_views(self.avatars[i], self.config.eval_views,
                                                         self.config.eval_resolution).to(self.device)
            planes = self.store.load_planes(name, self.device)
            scores[f"psnr/{name}"] = evaluate(planes, self.decoder, self._eval_views[name],
                                              self.config.render)["psnr"]
        mean = sum(scores.values()) / len(scores)
        self.run.log_metrics(self.step, visit=self.next_visit, eval_psnr_mean=mean, **scores)

    def _finish(self) -> None:
        digest = save_decoder(self.run.path / "decoder", self.decoder)
        for folder in self.avatars:
            planes = self.store.load_planes(folder.name, "cpu")
            save_triplane(self.run.path / "triplanes" / f"{folder.name}.safetensors", planes, digest,
                          {"avatar": folder.name, "stage": 1})


def evenly_spaced(items: list, limit: int) -> list:
    """At most `limit` of `items` (all when limit is 0), first and last included, spread evenly."""
    if not limit or len(items) <= limit:
        return items
    if limit == 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (limit - 1))] for i in range(limit)]


def final_scores(run_path: Path, avatars: list[Path], config: FitConfig, resolution: int | None,
                 perceptual=None) -> dict:
    """Held-out PSNR / SSIM / perceptual of every avatar with the run's final decoder (Table 4a)."""
    from engine.decoder import load_decoder
    from engine.triplane import load_triplane

    decoder = load_decoder(run_path / "decoder", config.device)
    rows = {}
    for folder in avatars:
        planes, _ = load_triplane(run_path / "triplanes" / f"{folder.name}.safetensors", decoder_hash(decoder),
                                  config.device)
        views = load_eval_views(folder, config.eval_views, resolution).to(config.device)
        rows[folder.name] = evaluate(planes, decoder, views, config.render, perceptual)
    keys = next(iter(rows.values())).keys()
    mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in keys}
    result = {"mean": mean, "per_avatar": rows}
    atomic_write_json(run_path / "results.json", result)
    return result
