"""The training tab's Qt-free logic: config → form fields (defaults, docstring tooltips), form values → the
`rodinhd` command line, validation, the run states the table shows, incremental metrics and "Use this model"."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from engine.config import ConfigError, ConfigMixin
from studio.config_form import (FieldSpec, changed_values, check_config, config_fields, field_docs, parse_value,
                                set_arguments)
from studio.launch_command import LaunchInvalid, LaunchRequest, plan_launch, resume_argv
from studio.metrics_series import MetricsFollower, default_picks, forgetting_keys, series
from studio.model_from_run import model_choice
from studio.run_processes import RunProcesses, read_launch
from studio.runs_model import RunsWatcher, run_folders, tail_lines
from training.cli.overrides import apply_overrides, parse_overrides
from training.fit.config import FitConfig
from training.runs import DEAD_REASON


@dataclass
class Inner(ConfigMixin):
    width: int = 8
    """Hidden width."""


@dataclass
class Toy(ConfigMixin):
    steps: int = 10
    """Optimiser steps
    over two lines."""
    lr: float = 1e-3
    name: str = "a"
    """A name."""
    flip: bool = True
    mode: Literal["x", "y"] = "x"
    sizes: tuple[int, ...] = (1, 2)
    device: str = "cpu"
    inner: Inner = field(default_factory=Inner)
    PRESETS: ClassVar[dict] = {"tiny": {}}

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1 (got {self.steps})")


def fake_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "index.json").write_text('{"avatars": []}')
    return folder


# ------------------------------------------------------------------------------------------------- the form
def test_config_fields_carry_types_defaults_and_docstrings():
    fields = {f.path: f for f in config_fields(Toy(steps=20))}
    assert list(fields) == ["steps", "lr", "name", "flip", "mode", "sizes", "inner.width"]  # device is hidden
    assert fields["steps"].type == "int" and fields["steps"].default == 20  # the instance's value is the default
    assert fields["steps"].doc == "Optimiser steps over two lines."
    assert fields["lr"].type == "float" and fields["lr"].doc == ""
    assert fields["flip"].type == "bool" and fields["mode"].type == "choice" and fields["mode"].choices == ("x", "y")
    assert fields["sizes"].type == "list" and fields["sizes"].item_type == "int" and fields["sizes"].default == [1, 2]
    assert fields["inner.width"].doc == "Hidden width." and fields["inner.width"].group == "inner"
    assert "Optimiser steps" in fields["steps"].tooltip() and "Default: 20" in fields["steps"].tooltip()


def test_real_fit_config_form_uses_the_preset_and_its_docstrings():
    fields = {f.path: f for f in config_fields(FitConfig.preset("paper"))}
    assert fields["triplane_resolution"].default == 512
    assert fields["decoder.channels"].default == 32
    assert fields["iwc_weight"].doc.startswith("λ of the IWC term (Eq. 3)")
    assert "device" not in fields
    assert field_docs(FitConfig)["epochs"] == "Task replay: outer loops over all avatars."


def test_parse_values_and_changed_fields():
    fields = config_fields(Toy())
    raw = {"steps": "10", "lr": "2e-3", "flip": False, "sizes": "1, 2, 4", "inner.width": "8", "name": " a "}
    changed, errors = changed_values(fields, raw)
    assert errors == []
    assert changed == {"lr": 0.002, "flip": False, "sizes": [1, 2, 4]}  # unchanged values are not passed
    _, errors = changed_values(fields, {"steps": "ten", "lr": "nan", "mode": "z", "sizes": "1, x"})
    assert errors == ["steps: expected a whole number, got 'ten'", "lr: expected a finite number, got 'nan'",
                      "mode: choose one of x, y (got 'z')", "sizes: expected a whole number, got 'x'"]
    assert parse_value(FieldSpec("s", "list", [], item_type="int"), "[3, 4]") == [3, 4]


def test_form_values_become_set_overrides_the_cli_reads_back():
    fields = config_fields(FitConfig())
    changed, _ = changed_values(fields, {"epochs": "2", "decoder.hidden": "16", "mode": "replay",
                                         "tv_weight": "0.001"})
    args = set_arguments(changed)
    assert args == ["--set", "tv_weight=0.001", "--set", "mode=\"replay\"", "--set", "epochs=2",
                    "--set", "decoder.hidden=16"]  # in the config's field order
    rebuilt = apply_overrides(FitConfig(), parse_overrides(args[1::2]))
    assert (rebuilt.epochs, rebuilt.mode, rebuilt.tv_weight, rebuilt.decoder.hidden) == (2, "replay", 1e-3, 16)
    assert check_config(Toy(), {"steps": 0}) == "steps must be at least 1 (got 0)"


# ---------------------------------------------------------------------------------------- the command line
def test_plan_builds_the_command_with_only_changed_values(tmp_path):
    data = fake_dataset(tmp_path / "data")
    plan = plan_launch(LaunchRequest("fit1", str(tmp_path / "runs" / "a"), "tiny", {"--data": str(data)},
                                     {"epochs": "2", "inner_steps": "50"}, avatars="3"), python="PY")
    assert plan.argv == ["PY", "-m", "training.cli.main", "fit", "--stage", "1", "--out", str(tmp_path / "runs/a"),
                         "--preset", "tiny", "--data", str(data), "--device", "cpu", "--avatars", "3",
                         "--set", "epochs=2"]
    assert resume_argv(plan.argv)[-1] == "--resume" and resume_argv(resume_argv(plan.argv)).count("--resume") == 1


def test_plan_uses_torchrun_for_several_processes_and_flags_for_synth(tmp_path):
    data = fake_dataset(tmp_path / "data")
    fit = tmp_path / "fit"
    (fit / "triplanes").mkdir(parents=True)
    plan = plan_launch(LaunchRequest("base", str(tmp_path / "b"), "tiny", {"--data": str(data),
                                     "--triplanes": str(fit)}, {"steps": "20"}, device="cuda", processes=2),
                       python="PY")
    assert plan.argv[:8] == ["PY", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                             "training.cli.main"]
    assert plan.argv[8:11] == ["train", "--stage", "base"] and plan.argv[-2:] == ["--set", "steps=20"]
    synth = plan_launch(LaunchRequest("synth", str(tmp_path / "d"), "tiny", values={"count": "3", "views": "64"}))
    assert synth.argv[3:] == ["synth", "--out", str(tmp_path / "d"), "--preset", "tiny", "--count", "3", "--resume"]
    assert synth.total == 3


def test_validation_lists_every_problem_and_launches_nothing(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    request = LaunchRequest("fit2", str(taken), "tiny", {"--data": str(tmp_path / "missing"), "--decoder": ""},
                            {"epochs": "0", "tv_weight": "abc"}, device="gpu", processes="two", avatars="-1")
    with pytest.raises(LaunchInvalid) as caught:
        plan_launch(request)
    text = "\n".join(caught.value.errors)
    for expected in ("tv_weight: expected a number, got 'abc'", "Dataset: ", "does not exist",
                     "Stage-1 run: choose a folder", "already exists and is not empty", "Device: expected cpu",
                     "Processes: expected a whole number", "Avatars: at least 1"):
        assert expected in text
    data = fake_dataset(tmp_path / "data")
    with pytest.raises(LaunchInvalid, match="epochs, inner_steps, stage2_steps and fisher_batches must be"):
        plan_launch(LaunchRequest("fit1", str(tmp_path / "new"), "tiny", {"--data": str(data)}, {"epochs": "0"}))
    with pytest.raises(LaunchInvalid, match="uses one process"):
        plan_launch(LaunchRequest("fit1", str(tmp_path / "new"), "tiny", {"--data": str(data)}, processes=2))
    (tmp_path / "nodata").mkdir()
    with pytest.raises(LaunchInvalid, match="is not a dataset"):
        plan_launch(LaunchRequest("vae", str(tmp_path / "new"), "tiny", {"--data": str(tmp_path / "nodata")}))
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------ run states
def test_a_process_that_fails_before_its_run_exists_shows_failed_with_its_message(tmp_path):
    processes, folder, go = RunProcesses(), tmp_path / "runs" / "early", tmp_path / "go"
    code = (f"import os, sys, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
            "print('rodinhd fit: error: the dataset is broken', file=sys.stderr); sys.exit(2)")
    pid = processes.start(folder, [sys.executable, "-c", code], "fit1")
    row = RunsWatcher(tmp_path / "runs").row(folder)  # the process waits for `go`: it is alive, without a run
    assert (row.state, row.reason, row.pid) == ("starting", None, pid) and row.resume is None
    go.touch()
    _wait(lambda: processes.tick())
    assert read_launch(folder)["exit_code"] == 2
    row = RunsWatcher(tmp_path / "runs").rows()[0]
    assert row.state == "failed" and "the dataset is broken" in row.reason and "exit code 2" in row.reason
    assert row.resume == [sys.executable, "-c", code]  # no run folder was made: start afresh, not --resume
    (folder / "config.json").write_text('{"kind": "fit_stage1", "config": {}}')
    assert RunsWatcher(tmp_path / "runs").row(folder).resume[-1] == "--resume"


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    processes, folder = RunProcesses(kill_after_s=0.5), tmp_path / "stubborn"
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('rea' + 'dy', flush=True); " \
           "time.sleep(60)"
    pid = processes.start(folder, [sys.executable, "-c", code], "text")
    _wait(lambda: "ready" in (folder / "launch.log").read_text())
    processes.stop(folder, pid)
    time.sleep(0.3)
    assert processes.tick() == []  # still there: SIGTERM ignored
    _wait(lambda: processes.tick())  # SIGKILL once 0.5 s have passed
    assert read_launch(folder)["exit_code"] == -9 and read_launch(folder)["stop_requested"]
    assert RunsWatcher(tmp_path).row(folder).state == "stopped"


def test_stop_sends_sigterm_then_a_stopped_launch_only_job_reads_stopped(tmp_path):
    processes, folder = RunProcesses(kill_after_s=5), tmp_path / "runs" / "synthish"
    processes.start(folder, [sys.executable, "-c", "import time; time.sleep(60)"], "synth", total=4)
    row = RunsWatcher(tmp_path / "runs").row(folder)
    assert row.state == "running" and row.total == 4 and row.step == 0 and row.pid is not None
    assert "Stopping" in processes.stop(folder, row.pid)
    _wait(lambda: processes.tick())
    row = RunsWatcher(tmp_path / "runs").row(folder)
    assert row.state == "stopped" and read_launch(folder)["exit_code"] == -15


def test_a_killed_run_reads_failed_and_cli_runs_resume_from_their_command(tmp_path):
    folder = tmp_path / "runs" / "cli"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status = {"state": "running", "kind": "fit_stage1", "pid": dead.pid, "host": os.uname().nodename,
              "started": "2026-01-01T10:00:00+00:00", "progress": {"step": 30, "total": 100}}
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "metrics.jsonl").write_text('{"step": 10, "time": 1.0, "loss": 0.5}\n'
                                          '{"step": 20, "loss": 0.25, "psnr": 18.5}\n')
    rows = RunsWatcher(tmp_path / "runs").rows()
    assert [r.name for r in rows] == ["cli"]
    row = rows[0]
    assert (row.state, row.reason, row.kind, row.kind_label) == ("failed", DEAD_REASON, "fit1", "fit stage 1")
    assert (row.step, row.total) == (30, 100) and row.metrics_text() == "loss 0.25 · psnr 18.5"
    assert row.resume is None and "outside the studio" in row.resume_block  # an old run: no command.json
    (folder / "command.json").write_text(json.dumps({"argv": ["fit", "--stage", "1", "--data", "d", "--out", "o"],
                                                     "cwd": str(tmp_path)}))
    row = RunsWatcher(tmp_path / "runs").row(folder)
    assert row.resume == [sys.executable, "-m", "training.cli.main", "fit", "--stage", "1", "--data", "d", "--out",
                          "o", "--resume"]
    assert row.resume_cwd == tmp_path and row.resume_block == ""


def test_a_recorded_exit_code_wins_over_a_reused_pid(tmp_path):
    """Once the studio recorded the launched process's exit code, a live process with the same pid (the pid was
    reused) must not make the run look alive: this test process stands in for the stranger."""
    folder = tmp_path / "runs" / "done"
    folder.mkdir(parents=True)
    launch = {"argv": ["fit"], "kind": "fit1", "pid": os.getpid(), "launched": time.time() - 100, "exit_code": 0}
    (folder / "launch.json").write_text(json.dumps(launch))
    status = {"state": "finished", "kind": "fit_stage1", "pid": os.getpid(), "host": os.uname().nodename,
              "started": "2026-01-01T10:00:00+00:00", "progress": {"step": 100, "total": 100}}
    (folder / "status.json").write_text(json.dumps(status))
    row = RunsWatcher(tmp_path / "runs").row(folder)
    assert (row.state, row.pid, row.extra.get("process_alive")) == ("finished", None, None)
    assert row.resume_block == "it has finished"  # not "its process is still exiting"
    # status.json older than the launch: the launch record decides, and its exit code says the process ended
    (folder / "launch.json").write_text(json.dumps({**launch, "launched": time.time() + 100}))
    row = RunsWatcher(tmp_path / "runs").row(folder)
    assert (row.state, row.pid, row.extra.get("process_alive")) == ("finished", None, None)
    # while no exit code is recorded the live pid still counts (the run is starting again)
    (folder / "launch.json").write_text(json.dumps({**launch, "launched": time.time() + 100, "exit_code": None}))
    row = RunsWatcher(tmp_path / "runs").row(folder)
    assert (row.state, row.pid, row.extra.get("process_alive")) == ("starting", os.getpid(), True)


def test_the_cli_records_its_command_in_new_runs(tmp_path, monkeypatch):
    from training.cli.main import main
    from training.runs.folder import read_command, recorded_command

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--count", "1", "--views", "2", "--test-views", "1",
                 "--resolution", "32"]) == 0
    argv = ["train", "--stage", "vae", "--data", str(data), "--out", str(tmp_path / "vae"), "--steps", "1",
            "--set", "image_size=32", "--set", "batch_size=1"]
    assert main(argv) == 0
    assert read_command(tmp_path / "vae") == {"argv": argv, "cwd": str(tmp_path)}
    assert recorded_command() is None  # only while a command runs


def test_run_folders_sees_runs_one_level_down_and_launch_only_folders(tmp_path):
    (tmp_path / "group" / "a").mkdir(parents=True)
    (tmp_path / "group" / "a" / "config.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "launch.json").write_text("{}")
    (tmp_path / "data").mkdir()
    assert run_folders(tmp_path) == [tmp_path / "b", tmp_path / "group" / "a"]
    (tmp_path / "config.json").write_text("{}")  # the watched folder itself is never listed as a run
    assert run_folders(tmp_path) == [tmp_path / "b", tmp_path / "group" / "a"]


# ----------------------------------------------------------------------------------- metrics, logs, model
def test_metrics_follower_reads_only_appended_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    follower = MetricsFollower(path)
    assert follower.poll() and [r["step"] for r in follower.records] == [1]
    with open(path, "a") as f:
        f.write('ss": 0.5}\n{"step": 3, "loss": 0.25, "psnr/avatar_00000": 20.0}\n')
    assert follower.poll() and [r["step"] for r in follower.records] == [1, 2, 3]
    assert not follower.poll()  # nothing new
    path.write_text('{"step": 1, "loss": 2.0}\n')  # shorter: a resumed run cut its file; read it again
    assert follower.poll() and follower.records == [{"step": 1, "loss": 2.0}]
    records = [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.5}, {"step": 10, "loss": 0.9}]
    assert series(records, "loss") == ([10.0], [0.9])  # a resume redid step 10: the old points are replaced
    assert default_picks(["loss", "loss_vlb", "psnr", "eval_psnr_mean", "lr", "epoch_time"]) == \
        ["loss", "loss_vlb", "psnr", "lr"]
    assert forgetting_keys([{"psnr/b": 1}, {"psnr/a": 2, "psnr/b": 3}]) == ["psnr/b", "psnr/a"]


def test_tail_lines_reads_the_end_and_keeps_the_last_redraw_of_a_progress_bar(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("".join(f"line {i}\n" for i in range(5000)) + "fit: 10%\rfit: 50%\rfit: 90%\n")
    lines = tail_lines(path, max_lines=100, max_bytes=4096)  # ~400 lines in 4 KB: the line limit decides
    assert len(lines) == 100 and lines[-1] == "fit: 90%" and lines[-2] == "line 4999" and lines[0] == "line 4901"
    lines = tail_lines(path, max_lines=5000, max_bytes=4096)  # the byte limit decides; the cut first line is dropped
    assert 300 < len(lines) < 500 and lines[-1] == "fit: 90%"
    assert lines[:-1] == [f"line {i}" for i in range(5000 - (len(lines) - 1), 5000)]
    assert tail_lines(tmp_path / "missing.txt") == []


def test_use_this_model_loads_builds_or_explains(tmp_path):
    base, up, fit = tmp_path / "base", tmp_path / "up", tmp_path / "fit"
    for folder in (base, up, fit):
        folder.mkdir()
    assert "Only diffusion runs" in model_choice([(fit, "fit1")]).message
    assert "needs its base" in model_choice([(up, "upsample")]).message
    assert "has not finished" in model_choice([(base, "base")]).message
    (base / "training.json").write_text("{}")
    (up / "training.json").write_text("{}")
    choice = model_choice([(base, "base"), (up, "upsample")], python="PY")
    assert choice.action == "build" and choice.model == base / "model_with_up"
    assert choice.argv == ["PY", "-m", "training.cli.main", "model", "build", "--base", str(base),
                           "--out", str(base / ".model_with_up.building"), "--upsample", str(up)]
    (base / "model").mkdir()
    (base / "model" / "model_index.json").write_text("{}")
    assert model_choice([(base, "base")]) .action == "load"
    assert model_choice([(base / "model", None)]).model == base / "model"  # any model folder loads as it is


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
