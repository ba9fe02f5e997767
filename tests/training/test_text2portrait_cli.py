"""`rodinhd text2portrait` and `rodinhd generate --prompt` with an untrained minute text model (engine.text) and
a minute avatar model: files written, records, and the refusals (exit 2, nothing written)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fit_helpers import cli
from PIL import Image
from tiny_models import C, tiny_stage

from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.encoders import build_encoder
from engine.encoders.mobilenet import MobileNetEncoderConfig
from engine.pipeline import AvatarPipeline
from engine.text import build_tiny_text_pipeline
from engine.text.lora import add_lora, save_lora

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT = "a woman with short red hair"
AVATAR_FAST = ["--steps", 1, "--stages", "base", "--resolution", 16, "--turntable", 0]


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("text") / "model"
    build_tiny_text_pipeline(resolution=16, seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> Path:
    tiny = build_tiny_text_pipeline(resolution=16, seed=0)
    add_lora(tiny.unet, rank=2, alpha=2, init_lora_weights=False)
    path = tmp_path_factory.mktemp("lora") / "style.safetensors"
    return save_lora(tiny.unet, path, rank=2, alpha=2, trigger="sks")


@pytest.fixture(scope="module")
def avatar_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    decoder = TriplaneDecoder(DecoderConfig(channels=C, hidden=16, geo_features=8, density_bias=2.0))
    encoder = build_encoder(MobileNetEncoderConfig(image_size=32))
    folder = tmp_path_factory.mktemp("avatar") / "model"
    AvatarPipeline(decoder, encoder, tiny_stage("base", 1, 10), tiny_stage("upsample", 2, 10)).save_pretrained(folder)
    return folder


def test_text2portrait_writes_candidates_and_a_record(text_model, lora, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["text2portrait", PROMPT, "--out", out, "--model", text_model, "--n", 3, "--steps", 2, "--seed", 7,
                "--lora", lora, "--lora-scale", 0.5]) == 0
    images = [Image.open(out / f"candidate_{i:02d}.png") for i in range(3)]
    assert all(im.size == (16, 16) and im.mode == "RGB" for im in images)
    assert not (out / "candidate_03.png").exists()
    record = json.loads((out / "text2portrait.json").read_text())
    assert record["prompt"] == PROMPT and record["seeds"] == [7, 8, 9] and record["steps"] == 2
    assert record["guidance"] == 5.0 and record["negative_prompt"] == "" and len(record["model_hash"]) == 16
    assert record["lora"]["scale"] == 0.5 and record["lora"]["trigger"] == "sks"
    assert record["candidates"][2] == {"file": "candidate_02.png", "seed": 9}
    assert set(record["timings"]) == {"load_s", "sample_s", "total_s"}


def test_text2portrait_long_prompt_note(text_model, tmp_path, capsys):
    assert cli(["text2portrait", " ".join(["freckles"] * 90), "--out", tmp_path, "--model", text_model, "--n", 1,
                "--steps", 1]) == 0
    assert "note: the prompt is" in capsys.readouterr().err
    assert json.loads((tmp_path / "text2portrait.json").read_text())["notes"]


@pytest.mark.parametrize("args, message", [
    (["  "], "prompt is empty"),
    ([PROMPT, "--n", 0], "between 1 and 16"),
    ([PROMPT, "--guidance", 40], "guidance must be between"),
    ([PROMPT, "--lora-scale", 5], "scale must be between"),
])
def test_text2portrait_refusals(text_model, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert cli(["text2portrait", *args, "--out", out, "--model", text_model, "--steps", 1]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_text2portrait_missing_model_names_the_flag(tmp_path, capsys):
    assert cli(["text2portrait", PROMPT, "--out", tmp_path / "o", "--model", tmp_path / "none"]) == 2
    assert "--model" in capsys.readouterr().err


def test_text2portrait_refuses_a_pickled_lora(text_model, tmp_path, capsys):
    torch.save({}, tmp_path / "x.ckpt")
    assert cli(["text2portrait", PROMPT, "--out", tmp_path / "o", "--model", text_model, "--lora",
                tmp_path / "x.ckpt"]) == 2
    assert "refusing to unpickle" in capsys.readouterr().err


def test_generate_from_a_prompt(text_model, avatar_model, tmp_path):
    assert cli(["generate", "--prompt", PROMPT, "--text-model", text_model, "--model", avatar_model, "--out", tmp_path,
                "--candidates", 2, "--pick", 1, "--text-steps", 2, "--seed", 4, *AVATAR_FAST]) == 0
    folder = tmp_path / "a_woman_with_short_red_hair"
    record = json.loads((folder / "avatar.json").read_text())
    assert record["mode"] == "text" and record["prompt"] == PROMPT and record["text_seed"] == 5 and record["seed"] == 4
    assert record["text_model_hash"] == record["text"]["model_hash"] and record["text"]["pick"] == 1
    assert record["preprocess"]["crop_from"] == "generated" and record["preprocess"]["matte"] == "none"
    portrait = np.asarray(Image.open(folder / "portrait.png"))
    assert portrait.shape == (16, 16, 3)
    assert np.array_equal(portrait, np.asarray(Image.open(folder / "candidate_01.png")))
    for name in ("input.png", "front.png", "avatar.safetensors", "candidate_00.png"):
        assert (folder / name).is_file()
    # candidate 1 of the run is what --candidates 1 with seed 5 gives
    again = tmp_path / "again"
    assert cli(["generate", "--prompt", PROMPT, "--text-model", text_model, "--model", avatar_model, "--out", again,
                "--text-steps", 2, "--seed", 5, *AVATAR_FAST]) == 0
    assert np.array_equal(portrait, np.asarray(Image.open(again / folder.name / "portrait.png")))
    assert not (again / folder.name / "candidate_00.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--prompt", " "], "--prompt is empty"),
    (["--prompt", PROMPT, "--unconditional", 1], "only one of them"),
    (["--prompt", PROMPT, "--pick", 2, "--candidates", 2], "--pick must be between 0 and 1"),
    (["--prompt", PROMPT, "--crop", "0,0,10"], "already framed"),
])
def test_generate_prompt_refusals(text_model, avatar_model, tmp_path, capsys, extra, message):
    assert cli(["generate", *extra, "--text-model", text_model, "--model", avatar_model, "--out", tmp_path / "o",
                *AVATAR_FAST]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_generate_prompt_missing_text_model_names_the_flag(avatar_model, tmp_path, capsys):
    assert cli(["generate", "--prompt", PROMPT, "--text-model", tmp_path / "none", "--model", avatar_model,
                "--out", tmp_path / "o", *AVATAR_FAST]) == 2
    assert "--text-model" in capsys.readouterr().err
