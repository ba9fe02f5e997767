"""`rodinhd generate --preprocess {auto,off} --crop X,Y,SIZE`: what reaches the model, input.png, avatar.json's
"preprocess" record, and the refusals (before anything is written). A minute model as in test_diffusion_train."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from diffusion_helpers import build_model, make_sources
from fit_helpers import cli, sha256
from image_helpers import faceless_photo, mostly_transparent_rgba, save_fully_transparent_palette_png
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ASTRONAUT = Path(__file__).resolve().parents[2] / "assets" / "portraits" / "astronaut.png"
FAST = ["--steps", 1, "--stages", "base", "--resolution", 16, "--turntable", 0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("preprocess_model")
    return build_model(root, *make_sources(root, count=2), steps=1)


def generate(model, out: Path, *args) -> int:
    return cli(["generate", *args, "--model", model, "--out", out, *FAST])


def outputs(folder: Path) -> tuple[dict, np.ndarray]:
    return json.loads((folder / "avatar.json").read_text()), np.asarray(Image.open(folder / "input.png"))


def test_auto_frames_the_face_and_records_it(model, tmp_path):
    assert generate(model, tmp_path, ASTRONAUT) == 0
    record, pixels = outputs(tmp_path / "astronaut")
    assert pixels.shape == (256, 256, 4)
    assert pixels[[0, 0, -1, -1], [0, -1, 0, -1], 3].max() == 0  # background matted away
    assert pixels[88, 128, 3] == 255  # the face, where the training faces are
    pre = record["preprocess"]
    assert pre["crop_from"] == "face" and pre["faces_found"] == 1 and pre["matte"] == "grabcut"
    assert pre["detector"].startswith("opencv-haar") and pre["source_size"] == [512, 512]
    assert record["input"] == str(ASTRONAUT) and record["input_hash"] == sha256(ASTRONAUT)[:16]


def test_a_manual_crop_replaces_detection(model, tmp_path):
    assert generate(model, tmp_path, ASTRONAUT, "--crop", "100,20,300") == 0
    record, pixels = outputs(tmp_path / "astronaut")
    pre = record["preprocess"]
    assert pre["crop_from"] == "manual" and pre["face"] is None and pre["detector"] is None
    assert pre["crop"] == {"x": 100.0, "y": 20.0, "size": 300.0, "angle_degrees": 0.0}
    assert pixels.shape == (256, 256, 4)


def test_off_keeps_the_centre_square_as_it_is(model, tmp_path):
    assert generate(model, tmp_path, ASTRONAUT, "--preprocess", "off") == 0
    record, pixels = outputs(tmp_path / "astronaut")
    assert record["preprocess"]["crop_from"] == "centre" and record["preprocess"]["matte"] == "none"
    assert pixels[..., 3].min() == 255
    assert np.abs(pixels[..., :3].astype(int) - np.asarray(Image.open(ASTRONAUT).reduce(2))).mean() < 2


@pytest.mark.parametrize("crop, message", [
    ("100,20", "--crop must be X,Y,SIZE"),
    ("1,2,0", "--crop SIZE must be"),
    ("5000,5000,10", "lies outside"),
])
def test_bad_crops_are_refused(model, tmp_path, capsys, crop, message):
    assert generate(model, tmp_path, ASTRONAUT, "--crop", crop) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_crop_needs_exactly_one_portrait(model, tmp_path, capsys):
    assert generate(model, tmp_path, ASTRONAUT, ASTRONAUT, "--crop", "0,0,100") == 2
    assert "exactly one portrait" in capsys.readouterr().err
    assert cli(["generate", "--unconditional", 1, "--crop", "0,0,100", "--model", model, "--out", tmp_path]) == 2
    assert not any(tmp_path.iterdir())


def test_no_face_stops_before_any_avatar_is_made(model, tmp_path, capsys):
    faceless = tmp_path / "disc.png"
    Image.fromarray(faceless_photo()).save(faceless)
    out = tmp_path / "out"
    assert generate(model, out, ASTRONAUT, faceless) == 2  # the good photo comes first: still nothing is written
    err = capsys.readouterr().err
    assert f"{faceless}: no face found" in err and "--crop X,Y,SIZE" in err and "--preprocess off" in err
    assert not out.exists()
    assert generate(model, out, faceless, "--preprocess", "off") == 0  # the way out the message names


def nothing_to_see(folder: Path) -> dict[str, Path]:
    flat = folder / "wall.png"
    Image.new("RGB", (200, 160), (180, 140, 120)).save(flat)
    sliver = folder / "sliver.png"
    Image.fromarray(mostly_transparent_rgba(), "RGBA").save(sliver)
    return {"fully transparent": save_fully_transparent_palette_png(folder / "empty.png"),
            "almost fully transparent": sliver, "one flat colour": flat}


@pytest.mark.parametrize("preprocess", ["auto", "off"])
def test_a_portrait_with_nothing_to_see_is_refused_and_nothing_written(model, tmp_path, capsys, preprocess):
    out = tmp_path / "out"
    for words, path in nothing_to_see(tmp_path).items():
        assert generate(model, out, ASTRONAUT, path, "--preprocess", preprocess) == 2
        err = capsys.readouterr().err
        assert f"{path}: the image is {words}" in err and "Traceback" not in err
        assert not out.exists()


def test_a_model_that_samples_nan_saves_nothing(model, tmp_path, capsys):
    import torch

    from engine.pipeline import AvatarPipeline

    pipe = AvatarPipeline.from_pretrained(model)
    with torch.no_grad():
        list(pipe.base.unet.parameters())[-1].fill_(float("nan"))
    broken = pipe.save_pretrained(tmp_path / "nan_model")
    out = tmp_path / "out"
    assert generate(broken, out, ASTRONAUT) == 2
    err = capsys.readouterr().err
    assert "the base stage produced" in err and "NaN/infinite" in err and "Traceback" not in err
    assert not (out / "astronaut").exists()
