"""training.vae: a tiny VAE trains on synthetic portraits into a complete run folder; stop/resume is exact."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.torch import load_file

from engine.config import ConfigError
from engine.encoders import VAEEncoder, load_encoder
from engine.errors import UserError
from training.data.format import PORTRAIT_FILE, write_index
from training.runs import Run
from training.vae import VAEConfig, train_vae
from training.vae.train import VAETrainer, batch_plan, split_holdout

TINY = VAEConfig.preset("tiny").replace(image_size=32, block_out_channels=(8, 16, 16, 16), norm_num_groups=8,
                                        batch_size=2, steps=6, log_every=2, checkpoint_every=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_dataset(root, count: int = 4, portraits: bool = True):
    """`count` avatar folders with a 48² RGBA portrait each (a coloured disc on transparency) and index.json."""
    ids = [f"avatar_{i:02d}" for i in range(count)]
    yy, xx = np.mgrid[:48, :48]
    disc = ((yy - 24) ** 2 + (xx - 20) ** 2 < 15 ** 2)
    for i, name in enumerate(ids):
        (root / name).mkdir(parents=True)
        if portraits:
            rgba = np.zeros((48, 48, 4), np.uint8)
            rgba[disc] = (60 * i, 255 - 50 * i, 120, 255)
            Image.fromarray(rgba, "RGBA").save(root / name / PORTRAIT_FILE)
    write_index(root, ids, {"kind": "test"})
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def final_weights(run_dir):
    return load_file(str(run_dir / "autoencoder" / "diffusion_pytorch_model.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    return out, train_vae(dataset, out, TINY)


def test_run_folder_is_complete(uninterrupted):
    out, result = uninterrupted
    assert result["steps"] == 6 and np.isfinite(result["l1"]) and np.isfinite(result["psnr"])
    run = Run.open(out)
    assert run.kind == "vae" and run.status()["state"] == "finished"
    logged = [m for m in run.metrics() if "loss" in m]
    assert [m["step"] for m in logged] == [2, 4, 6]
    assert all(np.isfinite(m[k]) for m in logged for k in ("loss", "l1", "kl", "perceptual", "lr"))
    assert run.metrics()[-1]["final_psnr"] == pytest.approx(result["psnr"])
    assert run.checkpoints() == ["step_000003", "step_000006"]
    grid = Image.open(out / "samples" / "step_000006.png")
    assert grid.size == (4 * 32, 2 * 32)  # inputs over reconstructions
    encoder = load_encoder(out / "encoder")
    assert isinstance(encoder, VAEEncoder) and encoder.image_size == 32
    features = encoder(torch.rand(2, 3, 64, 64))
    assert features["y1"].shape == (2, 8, 16, 16) and features["y3"].shape == (2, 16, 4, 4)
    assert features["global"].shape == (2, 16)
    vae = AutoencoderKL.from_pretrained(out / "autoencoder", local_files_only=True, use_safetensors=True)
    assert tuple(vae.config.block_out_channels) == (8, 16, 16, 16)


def test_extending_a_finished_run_equals_an_uninterrupted_one(dataset, uninterrupted, tmp_path):
    out = tmp_path / "extended"
    assert train_vae(dataset, out, TINY.replace(steps=3))["steps"] == 3
    result = train_vae(dataset, out, TINY, resume=True)  # steps may change on resume
    assert result["steps"] == 6
    assert_same_weights(final_weights(out), final_weights(uninterrupted[0]))
    assert result["psnr"] == uninterrupted[1]["psnr"]


def test_stop_then_resume_equals_an_uninterrupted_run(dataset, uninterrupted, tmp_path, monkeypatch):
    original = VAETrainer.train_step

    def stop_after_two(self):
        values = original(self)
        if self.step == 2:
            self.run.request_stop("test stop")  # what SIGTERM does
        return values

    out = tmp_path / "stopped"
    monkeypatch.setattr(VAETrainer, "train_step", stop_after_two)
    assert train_vae(dataset, out, TINY) is None
    run = Run.open(out)
    assert run.status()["state"] == "stopped" and run.latest_checkpoint() == "step_000002"
    assert not (out / "encoder").exists()
    monkeypatch.setattr(VAETrainer, "train_step", original)
    assert train_vae(dataset, out, TINY, resume=True)["steps"] == 6
    assert_same_weights(final_weights(out), final_weights(uninterrupted[0]))


def test_no_portraits_is_a_user_error(tmp_path):
    data = make_dataset(tmp_path / "data", count=2, portraits=False)
    with pytest.raises(UserError, match="no avatar has a portrait.png"):
        train_vae(data, tmp_path / "run", TINY)
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="index.json"):
        train_vae(tmp_path, tmp_path / "run", TINY)


def test_data_order_and_holdout():
    seen = [i for step in range(5) for i in batch_plan(10, 2, step, seed=3)[0]]
    assert sorted(seen) == list(range(10))  # one epoch: every portrait exactly once
    assert batch_plan(10, 2, 7, seed=3) == batch_plan(10, 2, 7, seed=3)
    assert batch_plan(10, 2, 7, seed=3) != batch_plan(10, 2, 7, seed=4)
    paths = [f"p{i}" for i in range(20)]
    assert split_holdout(paths) == (paths[:18], paths[18:])
    assert split_holdout(paths[:3]) == (paths[:2], paths[2:3])
    assert split_holdout(paths[:1]) == (paths[:1], paths[:1])


def test_presets_and_validation():
    paper = VAEConfig.preset("paper")
    kwargs = paper.autoencoder_kwargs()
    assert kwargs["block_out_channels"] == (128, 256, 512, 512) and kwargs["latent_channels"] == 8
    assert kwargs["layers_per_block"] == 2 and paper.image_size == 256
    assert VAEConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ConfigError, match="norm_num_groups"):
        TINY.replace(norm_num_groups=32)
    with pytest.raises(ConfigError, match="levels"):
        TINY.replace(block_out_channels=(8, 16, 16))
    with pytest.raises(ConfigError, match="image_size"):
        TINY.replace(image_size=36)
