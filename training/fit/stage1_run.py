"""Drive stage 1 into a run folder: create/resume the run, fit, then score every avatar on held-out views."""
from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from training.data.format import avatar_dirs
from training.fit.config import FitConfig
from training.fit.selection import choose_avatars, coverage
from training.fit.stage1 import KIND, Stage1, final_scores
from training.runs import Run


def select_avatars(data: Path, limit: int | None, method: str = "first", pool: int | None = None) -> list[Path]:
    avatars = avatar_dirs(data)
    if not avatars:
        raise UserError(f"{data}: the dataset lists no avatars")
    if limit and limit > len(avatars):
        raise UserError(f"--avatars {limit}: the dataset has only {len(avatars)}")
    chosen = choose_avatars(avatars, limit, method, pool)
    missing = [a.name for a in chosen if not (a / "transforms.json").is_file()]
    if missing:
        raise UserError(f"{data}: avatar folder(s) missing or incomplete: {', '.join(missing[:5])} "
                        "(run 'rodinhd data check')")
    return chosen


def run_stage1(data: Path, out: Path, config: FitConfig, limit: int | None = None, resume: bool = False,
               perceptual: bool = False, select: str = "first", pool: int | None = None) -> dict | None:
    avatars = select_avatars(data, limit, select, pool)
    run = Run.create(out, KIND, config, resume=resume)
    result = None
    with run.active():  # a stop (SIGTERM) leaves this block quietly with result None
        stage = Stage1(avatars, run, config)
        if resume:
            stage.restore()
        run.log(f"stage 1 ({config.mode}): {len(avatars)} avatars ({select}), {len(stage.visits)} visits")
        run.log(f"avatars: {' '.join(a.name for a in avatars)}; distinct values: {coverage(avatars)}")
        stage.fit()
        metric = None
        if perceptual:
            from engine.metrics import PerceptualDistance

            metric = PerceptualDistance().to(config.device)
        result = final_scores(run.path, avatars, config, None, metric)
        run.log_metrics(stage.step, final_psnr=result["mean"]["psnr"], final_ssim=result["mean"]["ssim"])
    return result
