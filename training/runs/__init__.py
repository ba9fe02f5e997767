"""Run folders shared by every training command (DESIGN.md "Runs").

    run = Run.create("runs/fit-001", "fit", config)            # or resume=True to continue it
    guard = LossGuard()
    with run.active():                                          # status running → finished/stopped/failed
        for step in range(start, total):
            loss = ...; guard.check(step, loss)
            run.log_metrics(step, loss=loss, psnr=psnr); run.progress(step + 1, total)
            if run.stop_requested:                              # SIGTERM / Ctrl-C
                run.save_checkpoint(step_checkpoint_name(step), tensors, meta); break

Importing this package does not import torch (the studio lists runs with it).
"""
from training.runs.checkpoints import CheckpointStore, checkpoint_step, step_checkpoint_name
from training.runs.guard import LossGuard, TrainingDiverged
from training.runs.listing import RunSummary, find_run_dirs, list_runs, summarize_run
from training.runs.metrics import read_metrics
from training.runs.run import Run, RunStopped
from training.runs.status import DEAD_REASON, STATES, pid_alive

__all__ = [
    "CheckpointStore", "DEAD_REASON", "LossGuard", "Run", "RunStopped", "RunSummary", "STATES", "TrainingDiverged",
    "checkpoint_step", "find_run_dirs", "list_runs", "pid_alive", "read_metrics", "step_checkpoint_name",
    "summarize_run",
]
