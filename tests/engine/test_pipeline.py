"""AvatarPipeline with an untrained minute model: save/load round trip, determinism, callbacks and cancel,
the avatar record and clear errors."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from image_helpers import save_fully_transparent_palette_png
from tiny_models import C, tiny_stage

from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.encoders import build_encoder
from engine.encoders.mobilenet import MobileNetEncoderConfig
from engine.errors import Cancelled, GenerationFailed, UserError
from engine.pipeline import AvatarPipeline

@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    decoder = TriplaneDecoder(DecoderConfig(channels=C, hidden=16, geo_features=8))
    encoder = build_encoder(MobileNetEncoderConfig(image_size=32))
    return AvatarPipeline(decoder, encoder, tiny_stage("base", 1), tiny_stage("upsample", 2))


@pytest.fixture
def portrait():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)


def test_same_seed_same_avatar_other_seed_other(pipe, portrait):
    a = pipe(portrait, steps=3, seed=5)
    b = pipe(portrait, steps=3, seed=5)
    c = pipe(portrait, steps=3, seed=6)
    assert a.planes.shape == (3, C, 16, 16)
    assert torch.equal(a.planes, b.planes) and not torch.equal(a.planes, c.planes)
    assert a.planes.abs().max() <= 1.0  # clamped like fitted triplanes


def test_portrait_changes_the_avatar_and_guidance_matters(pipe, portrait):
    other = 255 - portrait
    a = pipe(portrait, steps=3, seed=1, stages="base")
    b = pipe(other, steps=3, seed=1, stages="base")
    assert not torch.equal(a.planes, b.planes)
    g1 = pipe(portrait, steps=3, seed=1, stages="base", guidance=1.0)
    g3 = pipe(portrait, steps=3, seed=1, stages="base", guidance=3.0)
    assert not torch.equal(g1.planes, g3.planes)


def test_save_and_load_round_trip(pipe, portrait, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["components"] == {"decoder": "decoder", "encoder": "encoder", "base": "base", "upsample": "upsample"}
    again = AvatarPipeline.from_pretrained(tmp_path / "model")
    assert again.model_hash() == pipe.model_hash()
    assert torch.equal(again(portrait, steps=2, seed=3).planes, pipe(portrait, steps=2, seed=3).planes)


def test_half_model_folder_is_smaller_and_close(pipe, portrait, tmp_path):
    pipe.save_pretrained(tmp_path / "full")
    pipe.save_pretrained(tmp_path / "half", half=True)
    size = lambda folder: (folder / "base" / "model.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "half") < 0.6 * size(tmp_path / "full")
    half = AvatarPipeline.from_pretrained(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in half.base.parameters())
    assert torch.equal(half.base.norm_mean, pipe.base.norm_mean)  # statistics stay fp32
    for mine, theirs in zip(half.base.parameters(), pipe.base.parameters()):
        assert torch.equal(mine, theirs.half().float())
    a, b = half(portrait, steps=2, seed=3).planes, pipe(portrait, steps=2, seed=3).planes
    assert (a - b).abs().max() < 0.05


def test_callback_sees_every_step_and_can_cancel(pipe, portrait):
    seen = []
    pipe(portrait, steps=3, upsample_steps=2, seed=0, callback=lambda p: seen.append((p.stage, p.step, p.total,
                                                                                      tuple(p.preview.shape))))
    assert seen == [("base", 1, 3, (3, C, 8, 8)), ("base", 2, 3, (3, C, 8, 8)), ("base", 3, 3, (3, C, 8, 8)),
                    ("upsample", 1, 2, (3, C, 16, 16)), ("upsample", 2, 2, (3, C, 16, 16))]
    calls = []

    def cancel_at_second(progress):
        calls.append(progress.step)
        return progress.step < 2

    with pytest.raises(Cancelled):
        pipe(portrait, steps=5, seed=0, callback=cancel_at_second)
    assert calls == [1, 2]


def test_unconditional_and_metadata(pipe, portrait):
    avatar = pipe.unconditional(seed=2, steps=2)
    assert avatar.metadata["mode"] == "unconditional" and avatar.metadata["seed"] == 2
    record = pipe(portrait, steps=2, seed=0, sampler="dpmsolver++").record()
    assert record["sampler"] == "dpmsolver++" and record["model_hash"] == pipe.model_hash()
    assert record["triplane_shape"] == [3, C, 16, 16] and "torch" in record["versions"]


@pytest.mark.parametrize("kwargs, message", [
    ({"guidance": 31.0}, "guidance must be between"), ({"steps": 0}, "steps must be between 1 and 40"),
    ({"sampler": "euler"}, "unknown sampler"), ({"stages": "all"}, "stages must be one of"),
])
def test_bad_settings_are_one_clear_error(pipe, portrait, kwargs, message):
    with pytest.raises(UserError, match=message):
        pipe(portrait, **kwargs)


def test_mismatched_components_are_refused(pipe):
    wrong = TriplaneDecoder(DecoderConfig(channels=12, hidden=16, geo_features=8))
    with pytest.raises(UserError, match="decoder reads 12"):
        AvatarPipeline(wrong, pipe.encoder, pipe.base, pipe.upsample)
    base_only = AvatarPipeline(pipe.decoder, pipe.encoder, pipe.base)
    with pytest.raises(UserError, match="no upsample stage"):
        base_only.unconditional(steps=2)


def poisoned(stage):
    """A copy of a stage whose output is NaN everywhere (one NaN weight in its last layer)."""
    stage = copy.deepcopy(stage)
    with torch.no_grad():
        list(stage.unet.parameters())[-1].fill_(float("nan"))
    return stage


@pytest.mark.parametrize("broken", ["base", "upsample"])
def test_a_non_finite_triplane_is_an_error_not_an_avatar(pipe, portrait, broken):
    stages = {"base": pipe.base, "upsample": pipe.upsample, broken: poisoned(getattr(pipe, broken))}
    bad = AvatarPipeline(pipe.decoder, pipe.encoder, stages["base"], stages["upsample"])
    with pytest.raises(GenerationFailed, match=f"the {broken} stage produced .* NaN/infinite") as info:
        bad(portrait, steps=2, sampler="ddim")
    assert isinstance(info.value, UserError) and "nothing was saved" in str(info.value)
    with pytest.raises(GenerationFailed):
        bad.unconditional(steps=2)


def test_a_portrait_with_nothing_to_see_is_refused(pipe, tmp_path):
    path = save_fully_transparent_palette_png(tmp_path / "empty.png")
    with pytest.raises(UserError, match="empty.png: the image is fully transparent"):
        pipe(path, steps=1, stages="base")
    with pytest.raises(UserError, match="one flat colour"):
        pipe(np.full((40, 40, 3), 128, np.uint8), steps=1, stages="base")
