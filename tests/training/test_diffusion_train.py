"""Diffusion training end to end with minute configs: runs, resume, model build, generate, bad input, DDP."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from diffusion_helpers import BASE, build_model, make_sources, train_args
from fit_helpers import child_env, cli, set_args, sha256, status_of
from PIL import Image
from safetensors.torch import load_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("diffusion"))


@pytest.fixture(scope="module")
def model(sources, tmp_path_factory):
    data, fit = sources
    return build_model(tmp_path_factory.mktemp("model"), data, fit)


def same_tensors(a, b) -> bool:
    """safetensors files with equal tensors (their metadata order, hence bytes, may differ between writes)."""
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_base_run_is_complete(model):
    run = model.parent / "base"
    assert status_of(run)["state"] == "finished"
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 and r["vlb"] >= 0 for r in rows)  # learned variance → VLB term logged
    info = json.loads((run / "training.json").read_text())
    assert info["role"] == "base" and len(info["avatars"]) == 3
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["stage"]["unet"]["portrait_channels"] == [16, 24, 32]  # sized to the encoder by the trainer
    assert (run / "samples" / "step_0000002.png").is_file()


def test_upsample_run_logs_the_image_loss(model):
    rows = metrics(model.parent / "up")
    assert all(r["image_pixel"] > 0 and r["image_perceptual"] > 0 for r in rows)
    assert "vlb" not in rows[0]  # x0-prediction, fixed variance


def test_resume_equals_an_uninterrupted_run(sources, tmp_path):
    data, fit = sources
    assert cli(train_args("base", data, fit, tmp_path / "full", 3)) == 0
    assert cli(train_args("base", data, fit, tmp_path / "part", 1)) == 0
    assert cli(train_args("base", data, fit, tmp_path / "part", 3, "--resume")) == 0
    assert same_tensors(tmp_path / "full" / "base" / "model.safetensors",
                        tmp_path / "part" / "base" / "model.safetensors")
    assert [r["step"] for r in metrics(tmp_path / "part")] == [1, 2, 3]


def test_train_refuses_bad_input(sources, tmp_path, capsys):
    data, fit = sources
    assert cli(["train", "--stage", "base", "--data", data, "--out", tmp_path / "x"]) == 2
    assert "needs --triplanes" in capsys.readouterr().err
    assert cli(train_args("base", data, tmp_path / "nothing", tmp_path / "y", 1)) == 2
    assert "no decoder found" in capsys.readouterr().err
    assert cli(train_args("base", data, fit, tmp_path / "z", 1, "--set", "cond_drop=2")) == 2
    assert "cond_drop" in capsys.readouterr().err


def test_generate_writes_a_reproducible_avatar(model, sources, tmp_path):
    data, _ = sources
    portrait = data / "avatar_00001" / "portrait.png"
    args = ["generate", portrait, "--model", model, "--steps", 2, "--resolution", 32, "--turntable", 3]
    assert cli([*args, "--out", tmp_path / "a"]) == 0
    assert cli([*args, "--out", tmp_path / "b"]) == 0
    assert cli([*args, "--out", tmp_path / "c", "--seed", 1]) == 0
    a, b, c = (tmp_path / x / "portrait" for x in "abc")
    assert same_tensors(a / "avatar.safetensors", b / "avatar.safetensors")
    assert not same_tensors(a / "avatar.safetensors", c / "avatar.safetensors")
    record = json.loads((a / "avatar.json").read_text())
    assert record["seed"] == 0 and record["steps"] == 2 and record["sampler"] == "ddim"
    assert record["stages"] == "cascade" and record["triplane_shape"] == [3, 8, 16, 16]
    assert record["input_hash"] == sha256(portrait)[:16]
    assert {"encode_s", "base_s", "upsample_s", "total_s", "front_render_s", "turntable_s"} <= set(record["timings"])
    assert Image.open(a / "front.png").size == (32, 32)
    assert Image.open(a / "turntable.gif").n_frames == 3


def test_generate_unconditional_and_base_only(model, tmp_path):
    assert cli(["generate", "--unconditional", 2, "--model", model, "--out", tmp_path, "--steps", 2,
                "--stages", "base", "--turntable", 0, "--resolution", 16]) == 0
    records = [json.loads((tmp_path / f"unconditional_{i:05d}" / "avatar.json").read_text()) for i in (0, 1)]
    assert [r["seed"] for r in records] == [0, 1]
    assert all(r["mode"] == "unconditional" and r["triplane_shape"] == [3, 8, 8, 8] for r in records)


@pytest.mark.parametrize("extra, message", [
    (["--guidance", "-1"], "guidance must be between"),
    (["--steps", "0"], "steps must be between 1 and 50"),
    (["--steps", "51"], "steps must be between 1 and 50"),
])
def test_generate_refuses_bad_settings(model, sources, tmp_path, capsys, extra, message):
    portrait = sources[0] / "avatar_00000" / "portrait.png"
    assert cli(["generate", portrait, "--model", model, "--out", tmp_path, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_generate_refuses_bad_portraits_and_models(model, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert cli(["generate", text, "--model", model, "--out", tmp_path / "o"]) == 2
    assert "not an image" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    shutil.rmtree(broken / "upsample")
    assert cli(["generate", "--unconditional", 1, "--model", broken, "--out", tmp_path / "o"]) == 2
    assert "upsample" in capsys.readouterr().err
    (broken / "base" / "model.safetensors").rename(broken / "base" / "model.pt")
    assert cli(["generate", "--unconditional", 1, "--model", broken, "--out", tmp_path / "o"]) == 2
    assert "refusing to unpickle model.pt" in capsys.readouterr().err
    mismatched = tmp_path / "mismatched"
    shutil.copytree(model, mismatched)
    config = json.loads((mismatched / "base" / "config.json").read_text())
    config["unet"]["model_channels"] = 24
    (mismatched / "base" / "config.json").write_text(json.dumps(config))
    assert cli(["generate", "--unconditional", 1, "--model", mismatched, "--out", tmp_path / "o"]) == 2
    assert "weights do not match the config" in capsys.readouterr().err
    assert cli(["generate", "--unconditional", 1, "--model", tmp_path, "--out", tmp_path / "o"]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_model_build_refuses_an_unfinished_run(sources, tmp_path, capsys):
    assert cli(["model", "build", "--base", tmp_path, "--out", tmp_path / "m"]) == 2
    assert "not a finished" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_with_two_gloo_processes(sources, tmp_path):
    data, fit = sources
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.cli.main", *map(str, train_args("base", data, fit, out, 2))]
    result = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert status_of(out)["state"] == "finished"
    assert "world 2" in (out / "log.txt").read_text()
    assert [r["step"] for r in metrics(out)] == [1, 2]


def test_settings_helper_covers_the_stage():
    assert "stage.unet.channel_mult=[1, 2]" in set_args(BASE)
