"""The batched stage-2 fitter (training.fit.batched, `rodinhd fit --stage 2 --batch-avatars K`): the batched
triplane lookup and occupancy, the per-slot Adam, fits equal to the per-avatar path whatever the batch size,
early stop with slot refill, warm start, and the CLI (resume, workers, bad input). Tiny sizes throughout."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from engine.config import ConfigError
from engine.decoder import load_decoder
from engine.render import OccupancyGrid
from engine.render.occupancy import OccupancyStack
from engine.triplane import load_triplane, sample_triplane, sample_triplanes, save_triplane
from fit_helpers import AVATARS, cli, make_dataset, stage1_args, stage2_args, status_of, tiny_config
from training.fit import batched as batched_module
from training.fit.batched import BatchedFit, SlotAdam
from training.fit.data import load_views
from training.fit.stage2 import fit_triplane, frozen


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("batchdata") / "data", count=3)


@pytest.fixture(scope="module")
def stage1_run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("batchstage1") / "run"
    assert cli(stage1_args(dataset, out)) == 0
    return out


@pytest.fixture(scope="module")
def decoder(stage1_run):
    return frozen(load_decoder(stage1_run / "decoder"))


# ---- the batched pieces ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("aggregate", ["mean", "sum", "concat"])
def test_batched_lookup_matches_one_triplane_at_a_time_with_gradients(aggregate):
    gen = torch.Generator().manual_seed(0)
    planes = torch.randn(4, 3, 5, 9, 9, generator=gen).requires_grad_()
    points = torch.rand(60, 3, generator=gen) * 2 - 1
    index = torch.randint(0, 4, (60,), generator=gen)
    index[index == 2] = 3  # one triplane gets no points
    weights = torch.randn(60, 5 * (3 if aggregate == "concat" else 1), generator=gen)
    batched = sample_triplanes(planes, points, index, aggregate)
    (batched * weights).sum().backward()
    grad, planes.grad = planes.grad.clone(), None
    single = torch.cat([sample_triplane(planes[int(k)], points[n:n + 1], aggregate) for n, k in enumerate(index)])
    (single * weights).sum().backward()
    torch.testing.assert_close(batched, single)
    torch.testing.assert_close(grad, planes.grad)
    assert grad[2].abs().max() == 0


def test_batched_lookup_of_no_points_and_of_a_wrong_shape():
    planes = torch.zeros(2, 3, 4, 8, 8)
    assert sample_triplanes(planes, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).shape == (0, 4)
    with pytest.raises(ValueError, match="K, 3, C, R, R"):
        sample_triplanes(planes[0], torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))


def test_occupancy_stack_looks_each_point_up_in_its_own_grid():
    gen = torch.Generator().manual_seed(1)
    grids = [OccupancyGrid(torch.rand(8, 8, 8, generator=gen) > 0.5) for _ in range(3)]
    points = torch.rand(5, 7, 3, generator=gen) * 2.4 - 1.2  # some outside the box
    index = torch.tensor([0, 2, 1, 1, 0])
    got = OccupancyStack.of(grids).lookup(points, index[:, None])
    expected = torch.stack([grids[int(k)].lookup(points[n]) for n, k in enumerate(index)])
    assert torch.equal(got, expected) and got.any() and not got.all()
    with pytest.raises(ValueError, match="size and bound"):
        OccupancyStack.of([grids[0], OccupancyGrid.full(4)])


def test_slot_adam_is_torch_adam_per_slot_and_leaves_idle_slots_alone():
    gen = torch.Generator().manual_seed(2)
    start = torch.randn(3, 4, 5, generator=gen)
    param = torch.nn.Parameter(start.clone())
    slots = SlotAdam(param)
    references = [torch.nn.Parameter(start[k].clone()) for k in range(2)]
    optims = [torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-15) for p in references]
    for step in range(6):
        grads = torch.randn(3, 4, 5, generator=gen)
        if step == 3:  # slot 1 takes a new avatar: its Adam restarts from zero
            slots.reset(1)
            optims[1] = torch.optim.Adam([references[1]], lr=0.1, betas=(0.9, 0.99), eps=1e-15)
        param.grad = grads.clone()
        slots.step({0: 0.1, 1: 0.1})  # slot 2 is idle
        for k in range(2):
            references[k].grad = grads[k].clone()
            optims[k].step()
    for k in range(2):
        torch.testing.assert_close(param.data[k], references[k].data, atol=1e-6, rtol=1e-5)
    assert torch.equal(param.data[2], start[2])


# ---- fits ----------------------------------------------------------------------------------------------------
def _fit_in_memory(monkeypatch, decoder, config, dataset, jobs, warm=None):
    """BatchedFit.run with the final scoring replaced by keeping the planes (and the steps they got)."""
    kept = {}

    def keep(folder, planes, _decoder, _config, _out, _start, steps):
        kept[folder.name] = (planes, steps)
        return batched_module.AvatarResult(folder.name, 0.0, 0.0, 0.0, steps)

    monkeypatch.setattr(batched_module, "finish_avatar", keep)
    results = BatchedFit(decoder, config, dataset / "unused", warm).run(jobs)
    return kept, results


def test_batched_fits_equal_the_per_avatar_fits_whatever_the_batch_size(decoder, dataset, monkeypatch):
    jobs = [(dataset / name, 40 + i) for i, name in enumerate(AVATARS)]
    expected = {folder.name: fit_triplane(load_views(folder), decoder, tiny_config(), torch.Generator().manual_seed(seed))
                for folder, seed in jobs}
    for batch in (2, 3):  # with 2 slots the third avatar refills the first free slot
        kept, results = _fit_in_memory(monkeypatch, decoder, tiny_config(batch_avatars=batch), dataset, jobs)
        assert sorted(r.avatar for r in results) == sorted(AVATARS)
        for name, (planes, steps) in kept.items():
            assert steps == tiny_config().stage2_steps
            torch.testing.assert_close(planes, expected[name], atol=1e-4, rtol=0)


def test_early_stop_frees_the_slot_for_the_next_avatar(decoder, dataset, monkeypatch):
    config = tiny_config(batch_avatars=2, stage2_steps=40, stage2_plateau_db=100.0, stage2_check_every=2,
                         stage2_min_steps=4)  # no check can gain 100 dB: every avatar stops at its first chance
    kept, results = _fit_in_memory(monkeypatch, decoder, config, dataset,
                                   [(dataset / name, i) for i, name in enumerate(AVATARS)])
    assert [r.steps for r in results] == [4, 4, 4] and len(kept) == 3


def test_early_stop_needs_the_batched_fitter():
    with pytest.raises(ConfigError, match="batch_avatars"):
        tiny_config(stage2_plateau_db=0.1, batch_avatars=1)


def test_warm_start_begins_every_fit_from_the_mean_triplane(decoder, dataset, stage1_run, monkeypatch):
    from training.fit.stage2 import warm_start

    config = tiny_config(batch_avatars=2, stage2_warm_start=str(stage1_run / "triplanes"), triplane_init_std=0.0,
                         stage2_steps=1, triplane_lr=1e-12)
    warm = warm_start(config.stage2_warm_start, decoder, config)
    stage1 = [load_triplane(p)[0] for p in sorted((stage1_run / "triplanes").glob("*.safetensors"))]
    torch.testing.assert_close(warm, sum(stage1) / len(stage1))
    kept, _ = _fit_in_memory(monkeypatch, decoder, config, dataset, [(dataset / AVATARS[0], 0)], warm)
    torch.testing.assert_close(kept[AVATARS[0]][0], warm, atol=1e-6, rtol=0)  # no noise, no learning: the mean


# ---- the CLI -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batched_run(stage1_run, dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("batched") / "run"
    assert cli([*stage2_args(stage1_run, dataset, out), "--batch-avatars", "2"]) == 0
    return out


def test_batched_cli_writes_the_same_run_as_the_per_avatar_path(batched_run, stage1_run, dataset, tmp_path):
    single = tmp_path / "single"
    assert cli([*stage2_args(stage1_run, dataset, single), "--batch-avatars", "1"]) == 0
    assert status_of(batched_run)["state"] == "finished"
    results = json.loads((batched_run / "results.json").read_text())
    assert results["fitted"] == 3 and json.loads((batched_run / "config.json").read_text())["config"][
        "batch_avatars"] == 2
    for name in AVATARS:
        a, meta = load_triplane(batched_run / "triplanes" / f"{name}.safetensors")
        b, _ = load_triplane(single / "triplanes" / f"{name}.safetensors")
        torch.testing.assert_close(a, b, atol=2e-3, rtol=0)  # same seeds; fp16 files
        assert meta["extra"]["steps"] == tiny_config().stage2_steps


def test_batched_resume_refits_only_what_is_missing_with_another_batch_size(batched_run, stage1_run, dataset,
                                                                            tmp_path):
    out = tmp_path / "run"
    shutil.copytree(batched_run, out)
    for suffix in (".safetensors", ".json"):
        (out / "triplanes" / f"{AVATARS[2]}{suffix}").unlink()
    kept = (out / "triplanes" / f"{AVATARS[0]}.safetensors").stat().st_mtime_ns
    assert cli([*stage2_args(stage1_run, dataset, out), "--batch-avatars", "3", "--resume"]) == 0
    assert (out / "triplanes" / f"{AVATARS[0]}.safetensors").stat().st_mtime_ns == kept
    refit, _ = load_triplane(out / "triplanes" / f"{AVATARS[2]}.safetensors")
    first, _ = load_triplane(batched_run / "triplanes" / f"{AVATARS[2]}.safetensors")
    torch.testing.assert_close(refit, first, atol=2e-3, rtol=0)


def test_batched_workers_fit_every_avatar(stage1_run, dataset, tmp_path):
    out = tmp_path / "run"
    assert cli([*stage2_args(stage1_run, dataset, out), "--batch-avatars", "2", "--workers", "2"]) == 0
    assert json.loads((out / "results.json").read_text())["fitted"] == 3


def test_bad_warm_starts_are_one_line_user_errors(stage1_run, dataset, tmp_path, capsys):
    assert cli([*stage2_args(stage1_run, dataset, tmp_path / "a"), "--warm-start", tmp_path / "nothing"]) == 2
    err = capsys.readouterr().err
    assert "no such triplane file" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert cli([*stage2_args(stage1_run, dataset, tmp_path / "a"), "--warm-start", tmp_path / "empty"]) == 2
    assert "no triplane files" in capsys.readouterr().err
    other = tmp_path / "other.safetensors"
    save_triplane(other, torch.zeros(3, 8, 16, 16), "0123456789abcdef")
    assert cli([*stage2_args(stage1_run, dataset, tmp_path / "b"), "--warm-start", other]) == 2
    err = capsys.readouterr().err
    assert "fitted with decoder 0123456789abcdef" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
    assert cli([*stage1_args(dataset, tmp_path / "c"), "--batch-avatars", "2"]) == 2
    assert "belong to stage 2" in capsys.readouterr().err


def test_a_diverging_batched_fit_fails_the_run_and_keeps_no_half_fits(stage1_run, dataset, tmp_path, monkeypatch):
    from training.fit.stage2_run import run_stage2
    from training.runs import TrainingDiverged

    monkeypatch.setattr(batched_module, "_segment_mean",
                        lambda values, index, count: values.new_full((count,), float("nan")))
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="NaN"):
        run_stage2(stage1_run, dataset, out, tiny_config(batch_avatars=2))
    assert status_of(out)["state"] == "failed"
    assert not list(out.glob("triplanes/*.safetensors"))
