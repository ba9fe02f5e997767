"""`rodinhd fit --stage 2`: drive stage-2 fitting of a dataset into a run folder (sequential, local workers,
or sharded under torchrun)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from engine.decoder import load_decoder, save_decoder
from engine.errors import UserError
from engine.io import atomic_write_json
from training.fit.batched import BatchedFit
from training.fit.colour import summary_line, write_fit_report
from training.fit.config import FitConfig
from training.fit.distributed import StopFlag, device_for, init_from_env, shutdown
from training.fit.stage1_run import select_avatars
from training.fit.stage2 import AvatarResult, collect_results, fit_avatar, frozen, pending_avatars, warm_start
from training.runs import Run, RunStopped
from training.worker_pool import spawn_pool

KIND = "fit_stage2"


def decoder_folder(source: Path) -> Path:
    """A stage-1 run folder (its decoder/ subfolder) or a decoder folder itself."""
    source = Path(source)
    for candidate in (source / "decoder", source):
        if (candidate / "decoder.safetensors").is_file():
            return candidate
    raise UserError(f"{source}: no decoder found (expected a stage-1 run folder or a folder with "
                    "decoder.safetensors)")


def _avatar_seed(config: FitConfig, index: int) -> int:
    return config.seed * 100_003 + index


def run_stage2(decoder_source: Path, data: Path, out: Path, config: FitConfig, limit: int | None = None,
               workers: int = 1, resume: bool = False, only: list[str] | None = None) -> list[dict]:
    placement = init_from_env(config.device)
    config = config.replace(device=device_for(placement, config.device))
    decoder = frozen(load_decoder(decoder_folder(decoder_source), config.device))
    warm = warm_start(config.stage2_warm_start, decoder, config)  # a bad source fails before the run exists
    avatars = select_avatars(data, limit)
    index_of = {a.name: i for i, a in enumerate(avatars)}  # seeds follow the dataset order, whatever --only says
    if only:
        unknown = sorted(set(only) - set(index_of))
        if unknown:
            raise UserError(f"{data}: no avatar(s) named {', '.join(unknown)}")
        avatars = [a for a in avatars if a.name in set(only)]
    # every rank splits the same list: computed before any rank can start writing triplanes
    todo = placement.shard(pending_avatars(avatars, out))
    run = Run.create(out, KIND, config, resume=resume) if placement.is_main else None
    if run is not None:
        save_decoder(Path(out) / "decoder", decoder)
    placement.barrier()
    try:
        if run is None:
            _fit_sequential(todo, decoder, warm, config, out, index_of, StopFlag(), None)
            placement.barrier()  # matches rank 0's barrier before it writes results.json
        else:
            with run.active():
                run.log(f"stage 2: {len(avatars)} avatars, {len(todo)} for this process, world {placement.world}, "
                        f"{config.batch_avatars} at once")
                if workers > 1 and placement.world == 1:
                    _fit_pool(todo, config, out, index_of, workers, run)
                else:
                    _fit_sequential(todo, decoder, warm, config, out, index_of, run, run)
                placement.barrier()
                results = collect_results(out)
                summary = _summary(results, len(avatars))
                colour = write_fit_report(data, out, [a.name for a in avatars], decoder)
                if colour is not None:
                    summary["colour"] = {k: v for k, v in colour.items() if k != "per_avatar"}
                    run.log(summary_line(colour))
                atomic_write_json(Path(out) / "results.json", summary)
                run.progress(len(results), len(avatars), force=True)
                fitted = {r["avatar"] for r in results}
                missing = [a.name for a in avatars if a.name not in fitted]
                if missing:
                    raise RuntimeError(f"only {len(avatars) - len(missing)} of {len(avatars)} avatars fitted; "
                                       f"missing {', '.join(missing[:5])}; rerun with --resume")
    finally:
        shutdown()
    return collect_results(out)


def _summary(results: list[dict], total: int) -> dict:
    mean = lambda key: sum(r[key] for r in results) / max(len(results), 1)  # noqa: E731
    return {"avatars": total, "fitted": len(results), "mean_psnr": mean("psnr"), "mean_ssim": mean("ssim"),
            "per_avatar": results}


def _fit_sequential(todo, decoder, warm, config, out, index_of, stop, run: Run | None) -> None:
    should_stop = lambda: stop.stop_requested if run is not None else stop.set  # noqa: E731
    bar = _Bar(len(todo), disable=run is None)

    def done(result) -> None:
        if run is not None:
            run.log_metrics(result.steps, avatar=result.avatar, test_psnr=result.psnr, test_ssim=result.ssim,
                            seconds=result.seconds)
            run.progress(len(collect_results(out)), len(index_of))
        bar.add(result)

    def step_logger(name: str):
        def on_step(step, psnr):
            if run is not None and (step + 1) % 25 == 0:
                run.log_metrics(step + 1, avatar=name, train_psnr=psnr)
        return on_step

    jobs = [(folder, _avatar_seed(config, index_of[folder.name])) for folder in todo]
    _fit_jobs(jobs, decoder, warm, config, out, done, should_stop, step_logger)
    bar.close()


def _fit_jobs(jobs, decoder, warm, config: FitConfig, out: Path, on_done=lambda result: None,
              should_stop=lambda: False, step_logger=None) -> list[AvatarResult]:
    """Fit (folder, seed) pairs: together when batch_avatars > 1, else one at a time (`step_logger(name)` gives
    the per-step callback of the per-avatar path)."""
    if config.batch_avatars > 1:
        fit = BatchedFit(decoder, config, out, warm, min(config.batch_avatars, len(jobs) or 1))
        return fit.run(jobs, on_done, should_stop)
    results = []
    for folder, seed in jobs:
        on_step = step_logger(folder.name) if step_logger else None
        results.append(fit_avatar(folder, decoder, config, out, seed, on_step, should_stop, warm))
        on_done(results[-1])
    return results


class _Bar:
    """tqdm over avatars, showing avatars/hour and the running mean held-out PSNR."""

    def __init__(self, total: int, disable: bool = False) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="avatar", desc="stage 2", disable=disable)
        self.start, self.count, self.psnr_sum = time.perf_counter(), 0, 0.0

    def add(self, result: AvatarResult) -> None:
        self.count += 1
        self.psnr_sum += result.psnr
        hours = max(time.perf_counter() - self.start, 1e-9) / 3600
        self.bar.set_postfix(avatars_per_h=f"{self.count / hours:.0f}", psnr=f"{self.psnr_sum / self.count:.2f}",
                             refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ---- local worker processes --------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(decoder_dir: str, config_dict: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    config = FitConfig.from_dict(config_dict)
    decoder = frozen(load_decoder(Path(decoder_dir), config.device))
    _WORKER.update(config=config, decoder=decoder, warm=warm_start(config.stage2_warm_start, decoder, config))


def _work(job: tuple[list[tuple[str, int]], str]) -> list[dict]:
    """A batch of (folder, seed) fitted together (one at a time when batch_avatars is 1)."""
    pairs, out = job
    jobs = [(Path(f), seed) for f, seed in pairs]
    results = _fit_jobs(jobs, _WORKER["decoder"], _WORKER["warm"], _WORKER["config"], Path(out))
    return [r.__dict__ for r in results]


def _fit_pool(todo, config, out, index_of, workers, run: Run) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    pairs = [(str(f), _avatar_seed(config, index_of[f.name])) for f in todo]
    size = min(config.batch_avatars, -(-len(pairs) // workers))  # every worker gets a share
    jobs = [(pairs[i:i + size], str(out)) for i in range(0, len(pairs), size)]
    bar = _Bar(len(pairs))
    with spawn_pool(workers, _init_worker, (str(Path(out) / "decoder"), config.to_dict(), threads)) as pool:
        for batch in pool.imap_unordered(_work, jobs):
            for result in batch:
                run.log_metrics(result["steps"], avatar=result["avatar"], test_psnr=result["psnr"],
                                test_ssim=result["ssim"], seconds=result["seconds"])
                bar.add(AvatarResult(**result))
            run.progress(len(collect_results(out)), len(index_of))
            if run.stop_requested:
                break
    bar.close()
    if run.stop_requested:  # the pool is gone: only the avatars in flight are lost, finished ones are on disk
        raise RunStopped("stopped by signal")
