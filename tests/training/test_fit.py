"""Triplane fitting (training.fit, `rodinhd fit`): IWC, regularisers, schedules, the step, stage 1 end to end with
resume, stage 2 (frozen decoder, resume, local workers, torchrun) and bad input. Everything is tiny (3 avatars,
6 views at 32², 16² triplanes with 8 channels, 64 rays × 8 samples, 3 steps a visit)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.decoder import TriplaneDecoder, decoder_hash, load_decoder
from engine.triplane import load_triplane
from fit_helpers import (
    AVATARS, ROOT, TINY, child_env, cli, make_dataset, set_args, sha256, stage1_args, stage2_args, status_of, tiny_config,
)
from training.fit import step as step_module
from training.fit.stage1 import Stage1, schedule
from training.fit.stage1_run import run_stage1
from training.runs import CheckpointStore, TrainingDiverged, read_metrics

# ---- shared data and runs (module scope: generated once) ---------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("fitdata") / "data", count=3)


@pytest.fixture(scope="module")
def stage1_run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1") / "run"
    assert cli(stage1_args(dataset, out)) == 0
    return out


@pytest.fixture(scope="module")
def stage2_run(stage1_run, dataset, tmp_path_factory) -> tuple[Path, str]:
    """A sequential stage-2 run over all three avatars; also returns the stage-1 decoder file's hash before it."""
    before = sha256(stage1_run / "decoder" / "decoder.safetensors")
    out = tmp_path_factory.mktemp("stage2") / "run"
    assert cli(stage2_args(stage1_run, dataset, out)) == 0
    return out, before


# ---- stage 1 end to end --------------------------------------------------------------------------------------
def test_stage1_writes_a_complete_run(stage1_run):
    run = stage1_run
    assert status_of(run)["state"] == "finished"
    assert status_of(run)["progress"] == {"step": 12, "total": 12}
    stored = json.loads((run / "config.json").read_text())
    assert stored["kind"] == "fit_stage1"
    assert stored["config"]["decoder"]["channels"] == 8 and stored["config"]["triplane_resolution"] == 16
    decoder = load_decoder(run / "decoder")
    digest = decoder_hash(decoder)
    for name in AVATARS[:2]:
        planes, meta = load_triplane(run / "triplanes" / f"{name}.safetensors", expect_decoder_hash=digest)
        assert planes.shape == (3, 8, 16, 16) and meta["extra"]["avatar"] == name
        assert (run / "state" / f"{name}.iwc.safetensors").is_file()  # replay_iwc (the default mode)
    assert not (run / "triplanes" / f"{AVATARS[2]}.safetensors").exists()  # --avatars 2
    results = json.loads((run / "results.json").read_text())
    assert sorted(results["per_avatar"]) == AVATARS[:2]
    assert set(results["mean"]) >= {"psnr", "ssim"}
    assert all(5 < r["psnr"] < 60 for r in results["per_avatar"].values())
    assert (run / "checkpoints" / "latest.safetensors").is_file()


def test_stage1_logs_forgetting_after_every_visit(stage1_run):
    rows = [r for r in read_metrics(stage1_run / "metrics.jsonl") if "visit" in r]
    visits = schedule(tiny_config(), 2)
    assert [r["visit"] for r in rows] == list(range(1, len(visits) + 1))
    for row, done in zip(rows, range(1, len(visits) + 1)):
        seen = sorted({f"psnr/{AVATARS[v.avatar]}" for v in visits[:done]})
        assert sorted(k for k in row if k.startswith("psnr/")) == seen
        assert row["step"] == sum(v.steps for v in visits[:done])
        assert row["eval_psnr_mean"] == pytest.approx(sum(row[k] for k in seen) / len(seen))
    final = read_metrics(stage1_run / "metrics.jsonl")[-1]
    assert "final_psnr" in final and "final_ssim" in final


def test_stage1_refuses_to_overwrite_a_run(stage1_run, dataset, capsys):
    assert cli(stage1_args(dataset, stage1_run)) == 2
    assert "error" in capsys.readouterr().err


def stop_after_first_visit_then_resume(dataset: Path, out: Path, monkeypatch, seed: int | None = None) -> None:
    """Run stage 1 into `out`, stopped (as SIGTERM would) right after the first visit's checkpoint, then finish it
    with `--resume`. With `seed`, the global torch RNG is seeded before the first part (the decoder's init)."""
    original = Stage1._log_forgetting

    def stop_after_first_visit(self):
        original(self)
        self.run.request_stop("test: stop after the first visit")  # what SIGTERM does

    with monkeypatch.context() as patch:
        patch.setattr(Stage1, "_log_forgetting", stop_after_first_visit)
        if seed is not None:
            torch.manual_seed(seed)
        assert cli(stage1_args(dataset, out)) == 0
    status = status_of(out)
    assert status["state"] == "stopped" and "stop after the first visit" in status["reason"], status
    assert not (out / "decoder").exists() and not (out / "results.json").exists()
    _, meta = CheckpointStore(out / "checkpoints").load("latest")
    assert meta == {"next_visit": 1, "step": 3}
    if seed is not None:
        torch.manual_seed(seed + 1)  # the resumed part must not depend on the global RNG
    assert cli([*stage1_args(dataset, out), "--resume"]) == 0
    assert status_of(out)["state"] == "finished"


def assert_same_decoder(a: Path, b: Path, atol: float = 1e-5) -> None:
    first, second = load_decoder(a / "decoder"), load_decoder(b / "decoder")
    for (name, x), (_, y) in zip(first.state_dict().items(), second.state_dict().items()):
        torch.testing.assert_close(x, y, atol=atol, rtol=0, msg=f"decoder weight {name} differs")


def test_stage1_resume_after_a_stop_matches_an_uninterrupted_run(stage1_run, dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_first_visit_then_resume(dataset, out, monkeypatch)
    assert_same_decoder(out, stage1_run)


def test_stage1_resume_continues_exactly_where_it_stopped(dataset, tmp_path, monkeypatch):
    """Given the same initial decoder (global RNG seeded alike), stop + resume gives the uninterrupted result."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    torch.manual_seed(0)
    assert cli(stage1_args(dataset, straight)) == 0
    stop_after_first_visit_then_resume(dataset, resumed, monkeypatch, seed=0)
    visits = schedule(tiny_config(), 2)
    _, meta = CheckpointStore(resumed / "checkpoints").load("latest")
    assert meta == {"next_visit": len(visits), "step": sum(v.steps for v in visits)}
    assert status_of(resumed)["progress"] == {"step": 12, "total": 12}
    assert [r["visit"] for r in read_metrics(resumed / "metrics.jsonl") if "visit" in r] == list(range(1, 5))
    assert "resumed at visit 1/4" in (resumed / "log.txt").read_text()
    assert_same_decoder(resumed, straight)
    for name in AVATARS[:2]:
        a, _ = load_triplane(resumed / "triplanes" / f"{name}.safetensors")
        b, _ = load_triplane(straight / "triplanes" / f"{name}.safetensors")
        torch.testing.assert_close(a, b, atol=1e-3, rtol=0)
    ra = json.loads((resumed / "results.json").read_text())["per_avatar"]
    sa = json.loads((straight / "results.json").read_text())["per_avatar"]
    for name in AVATARS[:2]:
        assert ra[name]["psnr"] == pytest.approx(sa[name]["psnr"], abs=1e-3)


def test_stage1_resume_with_a_different_config_is_refused(stage1_run, dataset, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(stage1_run, out)
    args = [*stage1_args(dataset, out), "--resume", "--set", "tv_weight=0.5"]
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "tv_weight" in err and len(err.splitlines()) == 1


# ---- stage 2 -------------------------------------------------------------------------------------------------
def test_stage2_leaves_the_decoder_unchanged(stage1_run, stage2_run):
    out, before = stage2_run
    assert sha256(stage1_run / "decoder" / "decoder.safetensors") == before
    source, copy = load_decoder(stage1_run / "decoder"), load_decoder(out / "decoder")
    assert decoder_hash(copy) == decoder_hash(source)
    for (name, a), (_, b) in zip(source.state_dict().items(), copy.state_dict().items()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_stage2_writes_every_triplane_with_the_decoder_hash(stage1_run, stage2_run):
    out, _ = stage2_run
    digest = decoder_hash(load_decoder(stage1_run / "decoder"))
    assert sorted(p.name for p in (out / "triplanes").glob("*.safetensors")) == [f"{a}.safetensors" for a in AVATARS]
    for name in AVATARS:
        planes, meta = load_triplane(out / "triplanes" / f"{name}.safetensors", expect_decoder_hash=digest)
        assert planes.shape == (3, 8, 16, 16) and meta["extra"]["avatar"] == name
        assert torch.isfinite(planes).all()
    results = json.loads((out / "results.json").read_text())
    assert results["avatars"] == 3 and results["fitted"] == 3
    assert sorted(r["avatar"] for r in results["per_avatar"]) == AVATARS
    status = status_of(out)
    assert status["state"] == "finished" and status["kind"] == "fit_stage2"
    tested = [r["avatar"] for r in read_metrics(out / "metrics.jsonl") if "test_psnr" in r]
    assert sorted(tested) == AVATARS


def test_stage2_reports_the_fits_colour_against_their_portraits(stage1_run, stage2_run):
    out, _ = stage2_run
    report = json.loads((out / "colour.json").read_text())
    assert report["avatars"] == 3 and sorted(report["per_avatar"]) == AVATARS
    assert 0 <= report["own_closest"] <= 3 and report["worst_delta_e"] >= report["mean_delta_e"] > 0
    assert 0 <= report["region_agreement"] <= 1  # synthetic avatars: hair / skin / clothing regions found
    summary = json.loads((out / "results.json").read_text())["colour"]
    assert summary["mean_delta_e"] == report["mean_delta_e"] and "per_avatar" not in summary
    assert "colour vs portrait over 3 fits" in (out / "log.txt").read_text()


def test_stage2_starts_from_stage1_numbers_not_stage1_triplanes(stage1_run, stage2_run):
    """Stage 2 fits fresh triplanes: with 3 steps they are nowhere near stage 1's."""
    out, _ = stage2_run
    a, _ = load_triplane(out / "triplanes" / f"{AVATARS[0]}.safetensors")
    b, _ = load_triplane(stage1_run / "triplanes" / f"{AVATARS[0]}.safetensors")
    assert (a - b).abs().max() > 1e-2


def test_stage2_resume_skips_finished_avatars(stage1_run, stage2_run, dataset, tmp_path):
    original, _ = stage2_run
    out = tmp_path / "run"
    shutil.copytree(original, out)
    missing = AVATARS[1]
    for suffix in (".safetensors", ".json"):
        (out / "triplanes" / f"{missing}{suffix}").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "triplanes").iterdir() if p.name.startswith(
        (AVATARS[0], AVATARS[2]))}
    assert len(kept) == 4
    lines_before = len(read_metrics(out / "metrics.jsonl"))
    assert cli([*stage2_args(stage1_run, dataset, out), "--resume"]) == 0
    assert {n: (out / "triplanes" / n).stat().st_mtime_ns for n in kept} == kept  # not rewritten
    new_rows = read_metrics(out / "metrics.jsonl")[lines_before:]
    assert [r["avatar"] for r in new_rows if "test_psnr" in r] == [missing]
    refit, _ = load_triplane(out / "triplanes" / f"{missing}.safetensors")
    first, _ = load_triplane(original / "triplanes" / f"{missing}.safetensors")
    torch.testing.assert_close(refit, first, atol=1e-3, rtol=0)  # same per-avatar seed
    assert status_of(out)["state"] == "finished"
    assert json.loads((out / "results.json").read_text())["fitted"] == 3


def test_stage2_without_resume_refuses_an_existing_run(stage1_run, stage2_run, dataset, capsys):
    out, _ = stage2_run
    assert cli(stage2_args(stage1_run, dataset, out)) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_stage2_local_workers_fit_the_same_avatars(stage1_run, stage2_run, dataset, tmp_path):
    sequential, _ = stage2_run
    out = tmp_path / "run"
    assert cli([*stage2_args(stage1_run, dataset, out), "--workers", "2"]) == 0
    names = lambda run: sorted(p.name for p in (run / "triplanes").iterdir())  # noqa: E731
    assert names(out) == names(sequential)
    assert status_of(out)["state"] == "finished"
    assert json.loads((out / "results.json").read_text())["fitted"] == 3
    digest = decoder_hash(load_decoder(stage1_run / "decoder"))
    for name in AVATARS:
        a, _ = load_triplane(out / "triplanes" / f"{name}.safetensors", expect_decoder_hash=digest)
        b, _ = load_triplane(sequential / "triplanes" / f"{name}.safetensors")
        torch.testing.assert_close(a, b, atol=1e-2, rtol=0)  # same seeds; thread counts may differ


# ---- stage 2 under torchrun ----------------------------------------------------------------------------------
LAUNCHER = """
import os, runpy, sys, time
import training.fit.distributed as distributed
import training.fit.batched as batched
import training.fit.stage2_run as stage2_run

DELAY = float(os.environ.get("TEST_RANK1_DELAY", "0"))
_barrier, _calls = distributed.Placement.barrier, []

def barrier(self):
    _barrier(self)
    _calls.append(1)
    if DELAY and self.rank == 1 and len(_calls) == 1:
        time.sleep(DELAY)  # rank 1 is a little late after the first barrier

distributed.Placement.barrier = barrier
_fit = stage2_run.fit_avatar

def fit_avatar(folder, *args, **kwargs):
    with open(os.environ["TEST_FIT_LOG"], "a") as f:
        f.write(f"{os.environ['RANK']} {folder.name}\\n")
    return _fit(folder, *args, **kwargs)

stage2_run.fit_avatar = fit_avatar
_finish = batched.finish_avatar

def finish_avatar(folder, *args, **kwargs):  # the batched fitter's way out
    with open(os.environ["TEST_FIT_LOG"], "a") as f:
        f.write(f"{os.environ['RANK']} {folder.name}\\n")
    return _finish(folder, *args, **kwargs)

batched.finish_avatar = finish_avatar
runpy.run_module("training.cli.main", run_name="__main__")  # exactly what `python -m training.cli.main` does
"""


def torchrun_stage2(stage1_run, dataset, tmp_path, delay: float = 0.0):
    launcher = tmp_path / "launch.py"
    launcher.write_text(textwrap.dedent(LAUNCHER))
    log, out = tmp_path / "fits.log", tmp_path / "run"
    env = {**child_env(), "TEST_FIT_LOG": str(log), "TEST_RANK1_DELAY": str(delay)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher),
           *map(str, stage2_args(stage1_run, dataset, out))]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    fits = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return proc, out, fits


def test_cli_module_runs_as_main():
    proc = subprocess.run([sys.executable, "-m", "training.cli.main", "fit", "--help"], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--stage" in proc.stdout


def test_stage2_under_torchrun_shards_avatars_across_two_ranks(stage1_run, dataset, tmp_path):
    proc, out, fits = torchrun_stage2(stage1_run, dataset, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(name for _, name in fits) == AVATARS  # every avatar fitted exactly once
    assert {rank for rank, _ in fits} == {"0", "1"}  # by both ranks
    assert sorted(name for rank, name in fits if rank == "0") == [AVATARS[0], AVATARS[2]]
    assert sorted(p.name for p in (out / "triplanes").glob("*.safetensors")) == [f"{a}.safetensors" for a in AVATARS]
    results = json.loads((out / "results.json").read_text())
    assert results["fitted"] == 3 and sorted(r["avatar"] for r in results["per_avatar"]) == AVATARS
    assert status_of(out)["state"] == "finished"
    digest = decoder_hash(load_decoder(stage1_run / "decoder"))
    for name in AVATARS:
        load_triplane(out / "triplanes" / f"{name}.safetensors", expect_decoder_hash=digest)


def test_stage2_under_torchrun_fits_every_avatar_when_a_rank_is_late(stage1_run, dataset, tmp_path):
    proc, out, fits = torchrun_stage2(stage1_run, dataset, tmp_path, delay=2.5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(name for _, name in fits) == AVATARS
    assert json.loads((out / "results.json").read_text())["fitted"] == 3


# ---- bad input -----------------------------------------------------------------------------------------------
def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("rodinhd fit: error:")
    return err[0]


def test_stage2_without_a_decoder_is_a_user_error(dataset, tmp_path, capsys):
    args = ["fit", "--stage", "2", "--data", dataset, "--out", tmp_path / "run", *set_args(TINY)]
    assert cli(args) == 2
    assert "--decoder" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_stage2_with_a_folder_without_a_decoder_is_a_user_error(dataset, tmp_path, capsys):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert cli(stage2_args(empty, dataset, tmp_path / "run")) == 2
    line = one_error_line(capsys)
    assert "no decoder" in line and "not-a-run" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("stage", ["1", "2"])
def test_a_folder_without_index_json_is_a_user_error(stage1_run, tmp_path, capsys, stage):
    data = tmp_path / "empty-data"
    data.mkdir()
    args = ["fit", "--stage", stage, "--data", data, "--out", tmp_path / "run", *set_args(TINY)]
    if stage == "2":
        args += ["--decoder", stage1_run]
    assert cli(args) == 2
    assert "index.json" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value", [("--avatars", "0"), ("--avatars", "-1"), ("--workers", "0")])
def test_non_positive_counts_are_user_errors(dataset, tmp_path, capsys, flag, value):
    args = [*stage1_args(dataset, tmp_path / "run"), flag, value]
    assert cli(args) == 2
    assert flag in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_more_avatars_than_the_dataset_has_is_a_user_error(dataset, tmp_path, capsys):
    assert cli([*stage1_args(dataset, tmp_path / "run"), "--avatars", "9"]) == 2
    assert "only 3" in one_error_line(capsys)


def test_a_bad_set_override_is_a_user_error(dataset, tmp_path, capsys):
    assert cli([*stage1_args(dataset, tmp_path / "run"), "--set", "decoder.channels=6"]) == 2
    assert "channels" in one_error_line(capsys)
    assert cli([*stage1_args(dataset, tmp_path / "run"), "--set", "no_such_field=1"]) == 2
    assert "no_such_field" in one_error_line(capsys)


def nan_after(monkeypatch, good_calls: int) -> None:
    """training.fit.step.rendering_loss returns NaN (still differentiable) after `good_calls` calls."""
    original, calls = step_module.rendering_loss, []

    def rendering_loss(*args, **kwargs):
        loss, evaluated = original(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) > good_calls else loss), evaluated

    monkeypatch.setattr(step_module, "rendering_loss", rendering_loss)


def test_stage1_nan_loss_fails_the_run_and_keeps_the_checkpoint(dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    nan_after(monkeypatch, good_calls=3)  # the first visit (3 steps) is fine, the second turns NaN
    with pytest.raises(TrainingDiverged, match="NaN"):
        run_stage1(dataset, out, tiny_config(), limit=2)
    status = status_of(out)
    assert status["state"] == "failed" and "NaN" in status["reason"]
    tensors, meta = CheckpointStore(out / "checkpoints").load("latest")
    assert meta == {"next_visit": 1, "step": 3}
    decoder = TriplaneDecoder(tiny_config().decoder)
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in tensors.items() if k.startswith("decoder.")})
    assert all(torch.isfinite(p).all() for p in decoder.parameters())
    assert "NaN" in (out / "log.txt").read_text()


def test_stage2_nan_loss_fails_the_run_and_keeps_finished_avatars(stage1_run, dataset, tmp_path, monkeypatch):
    from training.fit.stage2_run import run_stage2

    out = tmp_path / "run"
    nan_after(monkeypatch, good_calls=3)  # avatar 0 is fine, avatar 1 turns NaN
    with pytest.raises(TrainingDiverged, match="NaN"):
        run_stage2(stage1_run, dataset, out, tiny_config(batch_avatars=1))  # one avatar at a time
    status = status_of(out)
    assert status["state"] == "failed" and "NaN" in status["reason"]
    digest = decoder_hash(load_decoder(stage1_run / "decoder"))
    load_triplane(out / "triplanes" / f"{AVATARS[0]}.safetensors", expect_decoder_hash=digest)
    assert not (out / "triplanes" / f"{AVATARS[1]}.safetensors").exists()


def test_nan_loss_through_the_cli_is_one_line_and_exit_1(dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    nan_after(monkeypatch, good_calls=0)
    assert cli(stage1_args(dataset, out)) == 1
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("rodinhd")]  # (tqdm also writes there)
    assert len(lines) == 1 and "NaN" in lines[0] and "Traceback" not in stderr
    assert status_of(out)["state"] == "failed"
