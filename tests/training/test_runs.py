"""Run folders (training.runs): create/resume/refuse, metrics.jsonl, atomic checkpoints with pruning, status
transitions, real SIGTERM/SIGKILL subprocesses, the loss guard and `rodinhd runs`."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import safetensors.torch
import torch

from engine.config import ConfigMixin
from engine.errors import UserError
from training.cli.main import main
from training.runs import (
    DEAD_REASON, LossGuard, Run, RunStopped, TrainingDiverged, list_runs, read_metrics, step_checkpoint_name,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TinyConfig(ConfigMixin):
    steps: int = 100
    lr: float = 1e-3
    width: int = 8
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("steps",)


def strict_lines(path: Path) -> list[dict]:
    """metrics.jsonl parsed as strict JSON (NaN/Infinity literals fail the test)."""
    def reject(name):
        pytest.fail(f"non-standard JSON constant {name} in {path}")
    return [json.loads(line, parse_constant=reject) for line in path.read_text().splitlines()]


def status_of(path: Path) -> dict:
    return json.loads((path / "status.json").read_text())


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


# ------------------------------------------------------------------------------------------ create / resume
def test_create_makes_the_run_folder(tmp_path):
    run = Run.create(tmp_path / "runs", "fit", TinyConfig(), name="a")
    path = tmp_path / "runs" / "a"
    assert run.path == path and run.name == "a"
    for sub in ("checkpoints", "samples"):
        assert (path / sub).is_dir()
    assert json.loads((path / "config.json").read_text()) == {"kind": "fit", "config": TinyConfig().to_dict()}
    status = status_of(path)
    assert status["state"] == "running" and status["kind"] == "fit" and status["pid"] == os.getpid()
    assert status["reason"] is None and status["progress"] == {"step": 0, "total": None}
    assert {"host", "started", "updated"} <= set(status)
    assert "run created" in (path / "log.txt").read_text()
    assert run.load_config(TinyConfig) == TinyConfig()


def test_create_refuses_an_existing_run_and_a_non_empty_folder(tmp_path):
    Run.create(tmp_path / "a", "fit", TinyConfig())
    with pytest.raises(UserError, match="already holds a run"):
        Run.create(tmp_path / "a", "fit", TinyConfig())
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        Run.create(tmp_path / "b", "fit", TinyConfig())
    (tmp_path / "empty").mkdir()
    Run.create(tmp_path / "empty", "fit", TinyConfig())  # an empty folder is fine


def test_resume_needs_an_existing_run_of_the_same_kind(tmp_path):
    with pytest.raises(UserError, match="no run there"):
        Run.create(tmp_path / "missing", "fit", TinyConfig(), resume=True)
    Run.create(tmp_path / "a", "fit", TinyConfig())
    with pytest.raises(UserError, match="'fit' run, not 'train'"):
        Run.create(tmp_path / "a", "train", TinyConfig(), resume=True)


def test_resume_with_equal_config_or_an_allowed_change(tmp_path):
    first = Run.create(tmp_path / "a", "fit", TinyConfig())
    started = first.status()["started"]
    Run.create(tmp_path / "a", "fit", TinyConfig(), resume=True)
    run = Run.create(tmp_path / "a", "fit", TinyConfig(steps=500), resume=True)
    assert run.config["steps"] == 500
    assert json.loads((tmp_path / "a" / "config.json").read_text())["config"]["steps"] == 500
    assert status_of(tmp_path / "a")["started"] == started
    assert "steps (100 → 500)" in (tmp_path / "a" / "log.txt").read_text()


def test_resume_a_run_older_than_a_config_field(tmp_path):
    """A field added to the config class after the run started is read as its default, not as a change."""
    Run.create(tmp_path / "a", "fit", TinyConfig())
    path = tmp_path / "a" / "config.json"
    stored = json.loads(path.read_text())
    del stored["config"]["width"]
    path.write_text(json.dumps(stored))
    Run.create(tmp_path / "a", "fit", TinyConfig(), resume=True)  # width absent = the default 8: accepted
    with pytest.raises(UserError, match=r"width \(8 → 16\)"):
        Run.create(tmp_path / "a", "fit", TinyConfig(width=16), resume=True)


def test_resume_config_mismatch_names_the_fields(tmp_path):
    Run.create(tmp_path / "a", "fit", TinyConfig())
    with pytest.raises(UserError) as info:
        Run.create(tmp_path / "a", "fit", TinyConfig(lr=2e-3, width=16, steps=7), resume=True)
    message = str(info.value)
    assert "lr (0.001 → 0.002)" in message and "width (8 → 16)" in message
    assert "steps" not in message.split(";")[0]  # allowed to change, so not listed as a difference
    Run.create(tmp_path / "d", "fit", {"model": {"width": 8}, "seed": 0})
    with pytest.raises(UserError, match=r"model\.width \(8 → 9\).*no field may change"):
        Run.create(tmp_path / "d", "fit", {"model": {"width": 9}, "seed": 0}, resume=True)
    Run.create(tmp_path / "d", "fit", {"model": {"width": 8}, "seed": 1}, resume=True, resume_may_change=("seed",))


def test_open_is_read_only(tmp_path):
    Run.create(tmp_path / "a", "fit", TinyConfig()).log_metrics(1, loss=0.5)
    run = Run.open(tmp_path / "a")
    assert run.kind == "fit" and run.config == TinyConfig().to_dict()
    assert run.latest_metrics()["loss"] == 0.5
    with pytest.raises(RuntimeError, match="read-only"):
        run.log_metrics(2, loss=0.4)
    with pytest.raises(UserError, match="no run there"):
        Run.open(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------ metrics
def test_metrics_append_json_safe_values(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    run.log_metrics(1, loss=0.5, psnr=float("nan"), note="warmup")
    run.log_metrics(2, {"loss": torch.tensor(0.25), "grad": float("inf"), "count": 3})
    lines = strict_lines(run.metrics_path)
    assert [line["step"] for line in lines] == [1, 2]
    assert lines[0]["psnr"] is None and lines[0]["note"] == "warmup" and lines[0]["loss"] == 0.5
    assert lines[1] == {"step": 2, "time": lines[1]["time"], "loss": 0.25, "grad": None, "count": 3}
    assert 0 <= lines[0]["time"] <= lines[1]["time"]
    with pytest.raises(TypeError, match="'bad'"):
        run.log_metrics(3, bad=[1, 2])


def test_metrics_time_continues_across_a_resume(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    time.sleep(0.3)
    before = run.log_metrics(1, loss=1.0)["time"]
    assert before >= 0.3
    resumed = Run.create(tmp_path / "a", "fit", TinyConfig(), resume=True)
    after = resumed.log_metrics(2, loss=0.9)["time"]
    assert after >= before
    assert [line["step"] for line in strict_lines(run.metrics_path)] == [1, 2]


def test_half_written_metrics_line_is_tolerated_and_cut_on_resume(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    run.log_metrics(1, loss=1.0)
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 2, "time": 0.1, "lo')
    assert run.latest_metrics()["step"] == 1
    assert [r["step"] for r in read_metrics(run.metrics_path)] == [1]
    assert list_runs(tmp_path)[0].metrics["step"] == 1
    Run.create(tmp_path / "a", "fit", TinyConfig(), resume=True).log_metrics(2, loss=0.8)
    assert [line["step"] for line in strict_lines(run.metrics_path)] == [1, 2]


# -------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    tensors = {"triplane": torch.randn(3, 4, 8, 8), "steps": torch.arange(5), "half": torch.randn(7).half(),
               "view": torch.randn(4, 6).t()}  # non-contiguous input is fine
    meta = {"step": 100, "optimizer": {"lr": 0.001, "betas": [0.9, 0.99]}, "note": "ok"}
    path = run.save_checkpoint("step_000100", tensors, meta)
    assert path == tmp_path / "a" / "checkpoints" / "step_000100.safetensors"
    loaded, loaded_meta = Run.open(tmp_path / "a").load_checkpoint("step_000100")
    assert loaded_meta == meta
    assert set(loaded) == set(tensors)
    for key, value in tensors.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value)
    assert run.latest_checkpoint() == "step_000100"
    with pytest.raises(UserError, match="no checkpoint 'nope'.*step_000100"):
        run.load_checkpoint("nope")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    run.save_checkpoint("step_000001", {"w": torch.ones(4)}, {"step": 1})

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 100)  # half a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="No space"):
        run.save_checkpoint("step_000002", {"w": torch.zeros(4)}, {"step": 2})
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["step_000001.safetensors"]
    monkeypatch.undo()
    tensors, meta = run.load_checkpoint(run.latest_checkpoint())
    assert torch.equal(tensors["w"], torch.ones(4)) and meta == {"step": 1}


def test_keep_last_n_step_checkpoints(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig(), keep_last=2)
    run.save_checkpoint("best", {"w": torch.zeros(1)}, {})
    for step in (100, 200, 300, 400):
        run.save_checkpoint(step_checkpoint_name(step), {"w": torch.full((1,), float(step))}, {"step": step})
    assert run.checkpoints() == ["step_000300", "step_000400", "best"]
    assert run.latest_checkpoint() == "step_000400"
    keep_all = Run.create(tmp_path / "b", "fit", TinyConfig(), keep_last=None)
    for step in (1, 2, 3, 4, 5):
        keep_all.save_checkpoint(step_checkpoint_name(step), {"w": torch.zeros(1)})
    assert len(keep_all.checkpoints()) == 5


# ------------------------------------------------------------------------------------------------- status
def test_status_finished_with_final_progress(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with run.active():
        assert signal.getsignal(signal.SIGTERM) not in (handlers[signal.SIGTERM],)
        run.progress(1, 10)
        run.progress(5)  # within 2 s of the last write: not written yet
        assert status_of(run.path)["progress"]["step"] != 5
        run.progress(10, 10)  # the end is always written
        assert status_of(run.path)["progress"] == {"step": 10, "total": 10}
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    status = status_of(run.path)
    assert status["state"] == "finished" and status["reason"] is None


def test_status_failed_records_one_line_reason_and_reraises(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    with pytest.raises(ValueError, match="bad batch"):
        with run.active():
            raise ValueError("bad batch shape\nsecond line of detail")
    status = status_of(run.path)
    assert status["state"] == "failed" and status["reason"] == "ValueError: bad batch shape"
    log = (run.path / "log.txt").read_text()
    assert "Traceback" in log and "second line of detail" in log


def test_status_failed_on_divergence(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    with pytest.raises(TrainingDiverged):
        with run.active():
            LossGuard().check(7, float("nan"))
    assert status_of(run.path)["reason"] == ("TrainingDiverged: loss became NaN at step 7; "
                                            "the last good checkpoint is kept")


def test_status_stopped(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    with run.active():
        run.request_stop("stopped by signal")
        run.check_stop()  # raises RunStopped, which active() absorbs
        pytest.fail("check_stop did not raise")
    assert (status_of(run.path)["state"], status_of(run.path)["reason"]) == ("stopped", "stopped by signal")

    run = Run.create(tmp_path / "b", "fit", TinyConfig())
    with run.active():
        raise RunStopped()
    assert status_of(run.path)["state"] == "stopped"

    run = Run.create(tmp_path / "c", "fit", TinyConfig())
    with pytest.raises(KeyboardInterrupt):
        with run.active():
            raise KeyboardInterrupt
    assert status_of(run.path)["state"] == "stopped"


def test_signal_in_process_only_requests_a_stop(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    with run.active():
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not run.stop_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.stop_requested
    status = status_of(run.path)
    assert (status["state"], status["reason"]) == ("stopped", "stopped by signal")
    assert "SIGTERM" in (run.path / "log.txt").read_text()


def test_log_txt_captures_run_log_and_logging_while_active(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    run.log("before activation")
    with run.active():
        run.log("inside")
        logging.getLogger("some.module").warning("library warning")
    logging.getLogger("some.module").warning("after the run")
    log = (run.path / "log.txt").read_text()
    assert "before activation" in log and "inside" in log and "library warning" in log
    assert "after the run" not in log


SIGTERM_CHILD = """
import sys, time, torch
from training.runs import Run, step_checkpoint_name
run = Run.create(sys.argv[1], "test", {"steps": 1000})
with run.active():
    print("ready", flush=True)
    step = 0
    while True:
        step += 1
        run.progress(step, 1000)
        time.sleep(0.01)
        if run.stop_requested:
            run.save_checkpoint(step_checkpoint_name(step), {"w": torch.full((2,), float(step))}, {"step": step})
            break
"""

SLEEPING_CHILD = """
import sys, time
from training.runs import Run
run = Run.create(sys.argv[1], "test", {"steps": 10})
with run.active():
    run.log_metrics(1, loss=0.5)
    print("ready", flush=True)
    time.sleep(60)
"""


def start_child(code: str, path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=child_env())
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        pytest.fail(f"child did not start: {line!r} {proc.communicate()[1]}")
    return proc


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = start_child(SIGTERM_CHILD, tmp_path / "run")
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    status = status_of(tmp_path / "run")
    assert (status["state"], status["reason"]) == ("stopped", "stopped by signal")
    run = Run.open(tmp_path / "run")
    name = run.latest_checkpoint()
    assert name is not None and name.startswith("step_")
    tensors, meta = run.load_checkpoint(name)
    assert tensors["w"][0].item() == meta["step"] == status["progress"]["step"]


def test_sigkilled_run_is_listed_as_failed(tmp_path):
    proc = start_child(SLEEPING_CHILD, tmp_path / "killed")
    proc.kill()
    proc.communicate(timeout=30)
    before = (tmp_path / "killed" / "status.json").read_bytes()
    [summary] = list_runs(tmp_path)
    assert (summary.name, summary.kind, summary.state) == ("killed", "test", "failed")
    assert summary.reason == DEAD_REASON
    assert summary.metrics["loss"] == 0.5
    assert (tmp_path / "killed" / "status.json").read_bytes() == before  # listing never writes
    assert json.loads(before)["state"] == "running"


# ----------------------------------------------------------------------------------------------- listing
def test_list_runs_recurses_one_level(tmp_path):
    Run.create(tmp_path / "fit", "fit", TinyConfig(), name="avatar_0")
    Run.create(tmp_path, "train", TinyConfig(), name="base")
    Run.create(tmp_path / "x" / "y", "fit", TinyConfig(), name="too_deep")
    (tmp_path / "not_a_run").mkdir()
    names = sorted(s.name for s in list_runs(tmp_path))
    assert names == ["base", "fit/avatar_0"]
    assert all(s.state == "running" for s in list_runs(tmp_path))  # this process is alive
    with pytest.raises(UserError, match="no runs folder"):
        list_runs(tmp_path / "missing")


# -------------------------------------------------------------------------------------------- loss guard
def test_loss_guard_rejects_nan_and_inf():
    guard = LossGuard()
    with pytest.raises(TrainingDiverged, match="loss became NaN at step 123; the last good checkpoint is kept"):
        guard.check(123, float("nan"))
    with pytest.raises(TrainingDiverged, match="infinite at step 4") as info:
        guard.check(4, torch.tensor(float("inf")))
    assert info.value.step == 4 and not isinstance(info.value, UserError)


def test_loss_guard_rejects_a_spike_after_enough_history():
    guard = LossGuard(max_factor=10.0, window=50)
    for step in range(9):
        guard.check(step, 1.0)
    guard.check(9, 50.0)  # only 9 values known: too early to judge
    for step in range(10, 30):
        guard.check(step, 1.0)
    with pytest.raises(TrainingDiverged, match="step 30.*10× the running median"):
        guard.check(30, 10.5)


def test_loss_guard_accepts_normal_noise_and_decay():
    rng = random.Random(0)
    guard = LossGuard()
    for step in range(2000):
        decay = 5.0 * math.exp(-step / 300) + 0.05
        guard.check(step, decay * rng.uniform(0.3, 3.0))
    signed = LossGuard()
    for step in range(200):  # losses around zero (e.g. a variational bound) never trip the ratio test
        signed.check(step, rng.uniform(-1.0, 1.0))


# ------------------------------------------------------------------------------------------------------ CLI
def test_cli_lists_runs(tmp_path, capsys):
    done = Run.create(tmp_path, "fit", TinyConfig(), name="fit-a")
    with done.active():
        done.progress(100, 100)
        done.log_metrics(100, loss=0.01234, psnr=31.5)
    broken = Run.create(tmp_path, "train", TinyConfig(), name="base-b")
    with pytest.raises(RuntimeError):
        with broken.active():
            broken.log_metrics(3, loss=float("nan"))
            raise RuntimeError("out of memory")
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "kind", "state", "progress", "started", "loss", "psnr", "reason"]
    fit = next(line for line in out if line.startswith("fit-a"))
    assert fit.split()[:4] == ["fit-a", "fit", "finished", "100/100"] and "0.01234" in fit and "31.50" in fit
    base = next(line for line in out if line.startswith("base-b"))
    assert "failed" in base and "RuntimeError: out of memory" in base


def test_cli_empty_and_missing_root(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs" in capsys.readouterr().out
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert "no runs folder" in capsys.readouterr().err


def test_second_sigint_forces_keyboard_interrupt(tmp_path):
    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    with pytest.raises(KeyboardInterrupt):
        with run.active():
            os.kill(os.getpid(), signal.SIGINT)  # first Ctrl-C: polite stop request
            time.sleep(0.05)
            assert run.stop_requested
            os.kill(os.getpid(), signal.SIGINT)  # second Ctrl-C: stop now
            time.sleep(5)
    assert status_of(run.path)["state"] == "stopped"


def test_active_in_a_worker_thread_leaves_signals_alone(tmp_path):
    import threading

    run = Run.create(tmp_path / "a", "fit", TinyConfig())
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def work():
        with run.active():
            seen.append(signal.getsignal(signal.SIGTERM))
            run.log_metrics(1, loss=1.0)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert seen == [before] and status_of(run.path)["state"] == "finished"
