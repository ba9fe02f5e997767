"""`rodinhd export` (every format, one-line errors with exit 2) and `rodinhd render` of self-contained avatars."""
from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from engine.avatar import TRIPLANE_FILE, Avatar
from engine.decoder import DecoderConfig, TriplaneDecoder, decoder_hash, save_decoder
from engine.triplane import save_triplane
from fit_helpers import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ball_avatar() -> Avatar:
    """A grey ball of radius ≈ 0.4 at the origin (channel 6 = half the squared distance in each plane)."""
    axis = torch.linspace(-1, 1, 24)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    planes = torch.zeros(3, 8, 24, 24)
    planes[:, 6] = (rows ** 2 + cols ** 2) / 2
    decoder = TriplaneDecoder(DecoderConfig(channels=8, hidden=16, geo_features=8)).eval()
    with torch.no_grad():
        for p in decoder.parameters():
            p.zero_()
        decoder.density_net[0].weight[0, 0], decoder.density_net[0].bias[0] = -30.0, 2.5
        decoder.density_net[2].weight[0, 0], decoder.density_net[2].bias[0] = 3.0, -2.0
    return Avatar(planes, decoder, {"mode": "test", "seed": 4})


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory) -> Path:
    return ball_avatar().save(tmp_path_factory.mktemp("export_cli") / "ball")


@pytest.mark.parametrize("fmt, args, check", [
    ("png", ["--resolution", 24, "--azimuth", 30, "--background", "transparent", "--samples", 16],
     lambda p: np.asarray(Image.open(p)).shape == (24, 24, 4)),
    ("sheet", ["--views", 3, "--columns", 3, "--resolution", 16], lambda p: Image.open(p).size == (48, 16)),
    ("gif", ["--frames", 3, "--resolution", 16, "--fps", 5], lambda p: iio.imread(p, index=None).shape[0] == 3),
    ("mp4", ["--frames", 2, "--resolution", 16], lambda p: iio.imread(p, index=None).shape[0] == 2),
    ("glb", ["--grid", 24], lambda p: trimesh.load(p, force="mesh").visual.kind == "vertex"),
    ("obj", ["--grid", 16, "--threshold", 3], lambda p: len(trimesh.load(p, force="mesh").faces) > 50),
    ("ply", ["--grid", 16], lambda p: len(trimesh.load(p, force="mesh").vertices) > 50),
    ("safetensors", [], lambda p: Avatar.load(p).metadata["seed"] == 4),
])
def test_every_format(avatar_dir, tmp_path, capsys, fmt, args, check):
    out = tmp_path / "out" / "thing"  # no suffix: the format's is added
    assert cli(["export", avatar_dir, "--format", fmt, "--out", out, *args]) == 0
    written = [p for p in (tmp_path / "out").iterdir() if p.name != "avatar.json"]
    assert len(written) == 1 and written[0].stem == "thing" and check(written[0])
    assert f"wrote {written[0]}" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "avatar.json").read_text())
    assert record["exports"][written[0].name]["kind"] == fmt and record["seed"] == 4


def test_the_cli_offers_every_export_kind():
    from engine.exports import EXPORT_KINDS
    from training.cli.export_cmd import FORMATS

    assert set(FORMATS) == set(EXPORT_KINDS)


def test_format_from_the_suffix_and_from_the_avatar_file(avatar_dir, tmp_path, capsys):
    assert cli(["export", avatar_dir / TRIPLANE_FILE, "--out", tmp_path / "m.obj", "--grid", 16]) == 0
    assert "vertices" in capsys.readouterr().out and (tmp_path / "m.obj").is_file()


@pytest.mark.parametrize("name, args, message", [
    ("x.png", ["--format", "png", "--grid", 32], "--grid does not apply to a png export"),
    ("x.png", ["--format", "png", "--resolution", 4], "resolution must be between 16 and 1024"),
    ("x.glb", ["--grid", 16, "--threshold", 1e9], "nothing above the threshold"),
    ("x.jpg", [], "unknown export format"),
    ("x.png", ["--format", "gif"], "written as .gif"),
    ("x", [], "give --format"),
])
def test_errors_are_one_line_and_exit_2(avatar_dir, tmp_path, capsys, name, args, message):
    assert cli(["export", avatar_dir, "--out", tmp_path / name, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1].split("\r")[-1]  # after any progress bar
    assert err.startswith("rodinhd export: error:") and message in err
    assert list(tmp_path.iterdir()) == []


def test_missing_avatar_and_old_files(tmp_path, capsys):
    assert cli(["export", tmp_path / "nope", "--out", tmp_path / "a.png"]) == 2
    assert "no such triplane file" in capsys.readouterr().err
    ball = ball_avatar()
    old = tmp_path / "old"
    save_triplane(old / TRIPLANE_FILE, ball.planes, decoder_hash(ball.decoder), extra={"seed": 4})  # old format
    assert cli(["export", old, "--out", tmp_path / "a.png", "--resolution", 16]) == 2
    assert "--decoder" in capsys.readouterr().err
    save_decoder(tmp_path / "model" / "decoder", ball.decoder)
    assert cli(["export", old, "--decoder", tmp_path / "model", "--out", tmp_path / "a.png",
                "--resolution", 16]) == 0
    assert Image.open(tmp_path / "a.png").size == (16, 16)


def test_render_takes_an_avatar_without_decoder(avatar_dir, tmp_path, capsys):
    assert cli(["render", avatar_dir, "--out", tmp_path / "views", "--views", 2, "--resolution", 16,
                "--samples", 8]) == 0
    assert len(list((tmp_path / "views").glob("*.png"))) == 2
    record = json.loads((tmp_path / "views" / "render.json").read_text())
    assert record["triplane_meta"]["extra"]["seed"] == 4
    assert cli(["render", avatar_dir / TRIPLANE_FILE, "--out", tmp_path / "turn", "--turntable", 2,
                "--format", "gif", "--resolution", 16, "--samples", 8]) == 0
    assert (tmp_path / "turn" / "turntable.gif").is_file()
    # a given decoder is checked against the avatar's
    save_decoder(tmp_path / "other", TriplaneDecoder(DecoderConfig(channels=8, hidden=16, geo_features=8)))
    assert cli(["render", avatar_dir, "--decoder", tmp_path / "other", "--out", tmp_path / "x",
                "--resolution", 16]) == 2
    assert "decoder" in capsys.readouterr().err
    # a plain triplane without --decoder asks for one
    ball = ball_avatar()
    save_triplane(tmp_path / "plain.safetensors", ball.planes, decoder_hash(ball.decoder))
    assert cli(["render", tmp_path / "plain.safetensors", "--out", tmp_path / "y", "--resolution", 16]) == 2
    assert "--decoder" in capsys.readouterr().err
