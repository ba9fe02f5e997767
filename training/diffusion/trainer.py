"""`rodinhd train --stage base|upsample`: train one stage of the cascade in a run folder (resumable, DDP under
torchrun). Every random choice of step k comes from a generator seeded by (seed, k, rank), so a resumed run
draws exactly what an uninterrupted one would."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from engine.diffusion.model import DiffusionStage, ema_update
from engine.encoders import PortraitEncoder, build_encoder, load_encoder
from engine.encoders.mobilenet import MobileNetEncoderConfig
from engine.errors import UserError
from engine.io import atomic_write_json
from training.diffusion.augment import degrade
from training.diffusion.config import DiffusionTrainConfig
from training.diffusion.dataset import TriplaneSet, plane_statistics
from training.diffusion.image_loss import PatchLoss
from training.diffusion.samples import write_sample
from training.fit.distributed import Placement, device_for, init_from_env, shutdown
from training.fit.state import load_optimizer_tensors, optimizer_tensors
from training.runs import LossGuard, Run, RunStopped, step_checkpoint_name

TRAINING_INFO = "training.json"


def make_encoder(config: DiffusionTrainConfig, device: str) -> PortraitEncoder:
    if config.encoder == "mobilenet_v2":
        return build_encoder(MobileNetEncoderConfig(image_size=config.encoder_image_size)).to(device)
    return load_encoder(Path(config.encoder), device)


def matched_to_encoder(config: DiffusionTrainConfig, encoder: PortraitEncoder) -> DiffusionTrainConfig:
    """The network's portrait inputs sized to the encoder's pyramid (recorded in the run's config.json)."""
    shapes = encoder.feature_shapes()
    unet = config.stage.unet.replace(portrait_channels=tuple(shapes[k][0] for k in ("y1", "y2", "y3")),
                                     portrait_sizes=tuple(shapes[k][1] for k in ("y1", "y2", "y3")),
                                     portrait_global_dim=shapes["global"][0])
    return config.replace(stage=config.stage.replace(unet=unet))


@torch.no_grad()
def encode_portraits(encoder: PortraitEncoder, portraits: torch.Tensor, device: str, batch: int = 16,
                     ) -> dict[str, torch.Tensor]:
    """The frozen encoder runs once per portrait; training reads the cached features."""
    parts: list[dict[str, torch.Tensor]] = []
    for i in range(0, len(portraits), batch):
        parts.append(encoder(portraits[i:i + batch].to(device)))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class StageTrainer:
    """Holds the data, model, EMA and optimiser of one stage and performs steps."""

    def __init__(self, data: TriplaneSet, config: DiffusionTrainConfig, placement: Placement, device: str,
                 encoder: PortraitEncoder | None = None):
        self.data, self.config, self.placement, self.device = data, config, placement, device
        stage_config = config.stage
        self.role = stage_config.role
        self.encoder = (encoder if encoder is not None else make_encoder(config, device)).to(device)
        self.features = encode_portraits(self.encoder, data.portraits(self.encoder.image_size), device)
        self.targets = data.at_resolution(stage_config.resolution).to(device)
        self.lowres = (data.at_resolution(stage_config.lowres_resolution).to(device)
                       if self.role == "upsample" else None)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.model = DiffusionStage(stage_config).to(device)
        self.model.set_normalisation(*plane_statistics(self.targets))
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.ddp = self._wrap(self.model)
        self.patch_loss = (PatchLoss(data, config.patch_size, config.patch_scales, config.patch_samples,
                                     config.perceptual_weight, torch.device(device), config.vgg16_weights)
                           if self.role == "upsample" and config.image_loss_weight > 0 else None)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.placement.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def agree_to_stop(self, local: bool) -> bool:
        """Every rank stops at the same step (DDP needs matching collectives): any rank's request counts."""
        if self.placement.world == 1:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def lr_at(self, step: int) -> float:
        warm = self.config.warmup_steps
        return self.config.lr * min(1.0, (step + 1) / warm) if warm > 0 else self.config.lr

    def step(self, step: int) -> dict[str, float]:
        config, model = self.config, self.model
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 101 + self.placement.rank)
        idx = torch.randint(len(self.data), (config.batch_size,), generator=generator)
        x0 = model.normalize(self.targets[idx])
        t = torch.randint(model.diffusion.num_timesteps, (len(idx),), generator=generator).to(self.device)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        drop = (torch.rand(len(idx), generator=generator) < config.cond_drop).to(self.device)
        features = {k: v[idx.to(v.device)] for k, v in self.features.items()}
        lowres = None
        if self.lowres is not None:
            degraded = degrade(self.lowres[idx], generator, config.augment_prob, config.augment_noise,
                               config.augment_blur)
            lowres = model.lowres_input(degraded)
        xt = model.diffusion.q_sample(x0, t, noise)
        output = self.ddp(xt, t, features, drop, lowres)
        losses = model.diffusion.training_losses(output, x0, xt, t, noise, model.config.prediction_type,
                                                 model.learned_variance, config.vlb_weight)
        loss = losses["loss"].mean()
        logged = {"mse": losses["mse"].mean().item()}
        if model.learned_variance:
            logged["vlb"] = losses["vlb"].mean().item()
        if self.patch_loss is not None:
            pred_x0 = model.diffusion.predict_x0(output[:, :model.config.channels], xt, t,
                                                 model.config.prediction_type)
            image = self.patch_loss(model.denormalize(pred_x0), idx.tolist(), generator)
            loss = loss + config.image_loss_weight * (image["pixel"] + config.perceptual_weight
                                                      * image.get("perceptual", torch.zeros(())))
            logged.update({f"image_{k}": v.item() for k, v in image.items()})
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            logged["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
        self.optimizer.step()
        ema_update(self.ema, model, config.ema_decay)
        return {"loss": loss.item(), **logged, "lr": self.lr_at(step)}

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        tensors.update(optimizer_tensors(self.optimizer, "opt"))
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v.to(self.device) for k, v in tensors.items() if k.startswith(prefix)}
        self.model.load_state_dict(part("model."))
        self.ema.load_state_dict(part("ema."))
        load_optimizer_tensors(self.optimizer, tensors, "opt")


def train_stage(data: Path, triplanes: Path, out: Path, config: DiffusionTrainConfig, resume: bool = False,
                limit: int | None = None, exclude: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Train the stage in `config.stage` → summary dict (None when stopped). The EMA weights end up in
    `out/<role>/` as a component folder."""
    placement = init_from_env(config.device)
    device = device_for(placement, config.device)
    try:
        dataset = TriplaneSet(data, triplanes, limit, exclude)
        if dataset.resolution % config.stage.resolution:
            raise UserError(f"{triplanes}: {dataset.resolution}² triplanes cannot make the stage's "
                            f"{config.stage.resolution}² ones")
        encoder = make_encoder(config, device)
        config = matched_to_encoder(config, encoder)
        trainer = StageTrainer(dataset, config, placement, device, encoder)
        run = Run.create(out, f"diffusion_{config.stage.role}", config, resume=resume) if placement.is_main else None
        start = _restore(trainer, run, out, placement) if resume else 0
        return _loop(trainer, run, start, Path(out), {"data": str(data), "triplanes": str(triplanes)})
    finally:
        shutdown()


def _restore(trainer: StageTrainer, run: Run | None, out: Path, placement: Placement) -> int:
    reader = run or Run.open(out)
    name = reader.latest_checkpoint()
    if name is None:
        return 0
    tensors, meta = reader.load_checkpoint(name, trainer.device)
    trainer.load_state_tensors(tensors)
    return int(meta["step"])


def _loop(trainer: StageTrainer, run: Run | None, start: int, out: Path, sources: dict[str, str],
          ) -> dict[str, Any] | None:
    from tqdm import tqdm

    config = trainer.config
    # a diffusion loss swings by 100× between batches (the VLB term at small t), so only a real blow-up counts
    guard = LossGuard(max_factor=1e4)
    if run is None:  # other ranks: same steps, no files
        from training.fit.distributed import StopFlag

        flag = StopFlag()
        for step in range(start, config.steps):
            trainer.step(step)
            if trainer.agree_to_stop(flag.set):
                break
        trainer.placement.barrier()  # leave together: a rank tearing down gloo early can hang the other
        return None
    info = None
    with run.active():
        run.log(f"{trainer.role}: {len(trainer.data)} avatars, {sum(p.numel() for p in trainer.model.parameters())}"
                f" parameters, steps {start}→{config.steps}, world {trainer.placement.world}")
        bar = tqdm(range(start, config.steps), initial=start, total=config.steps, unit="step",
                   desc=f"train {trainer.role}")
        for step in bar:
            values = trainer.step(step)
            guard.check(step, values["loss"])
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                run.log_metrics(step + 1, values)
                bar.set_postfix(loss=f"{values['loss']:.4f}")
            run.progress(step + 1, config.steps)
            stop = trainer.agree_to_stop(run.stop_requested)
            if stop and not run.stop_requested:
                run.request_stop("another process was stopped")
            if config.sample_every and (step + 1) % config.sample_every == 0:
                write_sample(trainer, run.samples_dir / f"step_{step + 1:07d}.png")
            if (step + 1) % config.checkpoint_every == 0 or run.stop_requested:
                _checkpoint(trainer, run, step + 1)
            if run.stop_requested:
                raise RunStopped("stopped by signal")
        info = _finish(trainer, run, out, sources)
    trainer.placement.barrier()
    return info


def _finish(trainer: StageTrainer, run: Run, out: Path, sources: dict[str, str]) -> dict[str, Any]:
    """Last checkpoint and sample; the EMA weights as the stage's component; training.json for `model build`."""
    config = trainer.config
    _checkpoint(trainer, run, config.steps)
    write_sample(trainer, run.samples_dir / f"step_{config.steps:07d}.png")
    component = out / trainer.role
    digest = trainer.ema.save(component, metadata={"decoder_hash": _decoder_hash(trainer)})
    trainer.encoder.save(out / "encoder")
    info = {"role": trainer.role, "steps": config.steps, "avatars": trainer.data.names, **sources,
            "decoder_hash": _decoder_hash(trainer), "component_hash": digest,
            "encoder": trainer.encoder.config.to_dict(), "final": run.latest_metrics()}
    atomic_write_json(out / TRAINING_INFO, info)
    run.log(f"saved the EMA weights to {component} ({digest})")
    return info


def _checkpoint(trainer: StageTrainer, run: Run, step: int) -> None:
    run.save_checkpoint(step_checkpoint_name(step), trainer.state_tensors(), {"step": step})


def _decoder_hash(trainer: StageTrainer) -> str:
    from engine.decoder import decoder_hash

    return decoder_hash(trainer.data.decoder)


__all__ = ["StageTrainer", "train_stage"]
