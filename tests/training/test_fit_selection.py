"""Which avatars stage 1 trains the decoder on (`rodinhd fit --stage 1 --select cover --pool N`)."""
from __future__ import annotations

import json
import shutil

import pytest
from fit_helpers import TINY, cli, make_dataset, set_args

from engine.errors import UserError
from training.data.format import avatar_dirs
from training.fit.selection import choose_avatars, cover_features, cover_selection, coverage


def test_cover_selection_prefers_what_is_not_covered_yet():
    features = [{"c=red", "h=black"}, {"c=red", "h=black"}, {"c=blue", "h=black"}, {"c=yellow", "h=blonde"}]
    assert cover_selection(features, 2) == [0, 3]  # 3 brings two new values; 0 wins the first tie by index
    assert cover_selection(features, 3) == [0, 2, 3]
    assert cover_selection(features, 9) == [0, 1, 2, 3]


def test_cover_features_count_a_patterns_second_colour():
    solid = {"clothing": {"colour": "red", "pattern": "solid", "colour2": "blue"}, "face": {"skin_tone": 0.99}}
    stripes = {**solid, "clothing": {**solid["clothing"], "pattern": "stripes"}}
    assert "cloth.colour=blue" not in cover_features(solid) and "cloth.colour=blue" in cover_features(stripes)
    assert "skin=4" in cover_features(solid)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("select") / "data", count=4)


def test_choose_avatars_keeps_dataset_order_and_the_pool(dataset):
    avatars = avatar_dirs(dataset)
    assert choose_avatars(avatars, 2, "first") == avatars[:2]
    picked = choose_avatars(avatars, 2, "cover", pool=3)
    assert len(picked) == 2 and picked == sorted(picked) and avatars[3] not in picked
    wide = coverage(picked)
    assert wide["cloth.colour"] >= coverage(avatars[:1])["cloth.colour"]


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 5, "method": "cover"}, "only 4 to choose from"),
    ({"count": 3, "method": "cover", "pool": 2}, "only 2 to choose from"),
    ({"count": 2, "method": "cover", "pool": 9}, "--pool 9"),
    ({"count": 2, "method": "random"}, "--select must be one of"),
])
def test_bad_selections_are_user_errors(dataset, kwargs, message):
    with pytest.raises(UserError, match=message):
        choose_avatars(avatar_dirs(dataset), **kwargs)


def test_cover_on_a_dataset_without_attributes_names_the_way_out(dataset, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    (copy / "avatar_00002" / "attributes.json").unlink()
    with pytest.raises(UserError, match="--select first"):
        choose_avatars(avatar_dirs(copy), 2, "cover")


def test_stage1_cli_trains_on_the_covering_avatars_and_logs_them(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "--stage", "1", "--data", dataset, "--out", out, "--avatars", "2", "--select", "cover",
            "--pool", "3", *set_args(TINY)]
    assert cli(args) == 0
    chosen = [a.name for a in choose_avatars(avatar_dirs(dataset), 2, "cover", pool=3)]
    assert sorted(p.stem for p in (out / "triplanes").glob("*.safetensors")) == chosen
    assert f"avatars: {' '.join(chosen)}" in (out / "log.txt").read_text()
    assert sorted(json.loads((out / "results.json").read_text())["per_avatar"]) == chosen
    assert cli(["fit", "--stage", "1", "--data", dataset, "--out", tmp_path / "bad", "--avatars", "2",
                "--pool", "1", "--select", "cover", *set_args(TINY)]) == 2
    assert "only 1 to choose from" in capsys.readouterr().err
