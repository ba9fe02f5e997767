"""The Qt-free studio state: validation leaves the state unchanged, listeners hear each change once, seeds,
camera limits and history."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engine.avatar import Avatar
from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.errors import UserError
from studio.state import ELEVATION_LIMIT, RADIUS_RANGE, Camera, GenerationSettings, StudioState


@pytest.fixture
def state():
    s = StudioState()
    s.heard = []
    s.subscribe(s.heard.append)
    return s


def avatar(seed: int) -> Avatar:
    decoder = TriplaneDecoder(DecoderConfig(channels=4, hidden=8, geo_features=4))
    return Avatar(torch.zeros(3, 4, 8, 8), decoder, {"seed": seed})


def test_settings_are_validated_and_a_bad_change_changes_nothing(state):
    state.update_settings(guidance=2.5, steps=20)
    assert state.heard == ["settings"] and state.settings.guidance == 2.5
    before = state.settings
    for bad, message in (({"guidance": -1.0}, "guidance"), ({"steps": 0}, "steps"), ({"sampler": "x"}, "sampler"),
                         ({"seed": -5}, "seed"), ({"stages": "all"}, "stages")):
        with pytest.raises(UserError, match=message):
            state.update_settings(**bad)
    assert state.settings == before and state.heard == ["settings"]
    state.update_settings(guidance=2.5)  # no change, no notification
    assert state.heard == ["settings"]


def test_seed_lock(state):
    assert state.seed_for_next_run() == 0
    state.update_settings(seed_locked=False)
    first = state.seed_for_next_run(random.Random(1))
    second = state.seed_for_next_run(random.Random(2))
    assert first != second and state.settings.seed == second


def test_camera_orbit_zoom_presets(state):
    state.orbit(370.0, 200.0)
    assert state.camera.azimuth == pytest.approx(10.0) and state.camera.elevation == ELEVATION_LIMIT
    state.zoom(100.0)
    assert state.camera.radius == RADIUS_RANGE[1]
    state.zoom(float("nan"))
    assert state.camera.radius == RADIUS_RANGE[1]
    state.view("back")
    assert (state.camera.azimuth, state.camera.elevation) == (180.0, 0.0)
    front = Camera.preset("front").c2w()
    assert np.allclose(front[:3, 3][[0, 2]], [0.0, Camera().radius], atol=1e-6)  # on +z, looking at the head
    state.reset_camera()
    assert state.camera == Camera()
    assert state.heard.count("camera") == 4  # orbit, zoom, back, reset: the NaN zoom changed nothing
    with pytest.raises(UserError, match="unknown view"):
        state.view("top")


def test_portrait_must_exist(state, tmp_path):
    with pytest.raises(UserError, match="no such portrait"):
        state.set_portrait(tmp_path / "missing.png")
    assert state.portrait is None and state.heard == []


def test_history_keeps_what_made_each_avatar(state, tmp_path):
    portrait = tmp_path / "p.png"
    portrait.write_bytes(b"x")
    state.set_portrait(portrait)
    state.update_settings(seed=3)
    state.set_avatar(avatar(3))
    state.update_settings(seed=4, guidance=2.0)
    state.set_avatar(avatar(4))
    state.reopen(0)
    assert state.avatar.metadata["seed"] == 3 and state.settings.seed == 3 and state.settings.guidance != 2.0
    assert state.portrait == portrait
    with pytest.raises(UserError, match="no history entry 5"):
        state.reopen(5)
    state.max_history = 2
    state.set_avatar(avatar(5))
    assert [e.avatar.metadata["seed"] for e in state.history] == [4, 5]


def test_pan_moves_the_target_in_the_view_plane_and_is_bounded(state):
    state.pan(0.1, 0.0)
    right = Camera().c2w()[:3, 0]
    moved = np.asarray(state.camera.target) - np.asarray(Camera().target)
    assert np.allclose(moved, right * 0.1 * state.camera.radius)
    for _ in range(100):
        state.pan(1.0, 1.0)
    assert np.abs(state.camera.target).max() <= 1.5
    c2w = state.camera.c2w()
    forward = -c2w[:3, 2]
    to_target = np.asarray(state.camera.target) - c2w[:3, 3]
    assert np.allclose(np.cross(forward, to_target / np.linalg.norm(to_target)), 0, atol=1e-9)
    state.reset_camera()
    assert state.camera == Camera()


def test_background_portrait_options_and_unconditional_settings(state, tmp_path):
    state.set_background((0.0, 0.5, 1.0))
    with pytest.raises(UserError, match="background"):
        state.set_background((2.0, 0.0, 0.0))
    assert state.background == (0.0, 0.5, 1.0)
    with pytest.raises(UserError, match="crop"):
        state.update_portrait_options(crop=(0, 0, 2))
    state.update_portrait_options(crop=(1, 2, 64), detect=False)
    photo = tmp_path / "a.png"
    photo.write_bytes(b"x")
    state.set_portrait(photo)
    assert state.portrait_options.crop is None and not state.portrait_options.detect  # a new photo, a new crop
    state.update_settings(unconditional=True)
    assert "guidance" not in state.settings.pipeline_kwargs()
    record = {"mode": "unconditional", "seed": 7, "steps": 3, "sampler": "ddim", "stages": "base", "guidance": 1.0}
    settings = GenerationSettings.from_record(record)
    assert settings.unconditional and settings.seed == 7 and settings.stages == "base"
