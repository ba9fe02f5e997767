"""`rodinhd synth --gamut`: the avatars of a seed that between them show every palette colour."""
from __future__ import annotations

import json

from training.cli.main import main
from training.synth import gamut
from training.synth.writer import avatar_seed


def test_the_gamut_shows_every_palette_colour_and_each_avatar_adds_one():
    indices = gamut.gamut_indices(31)
    shown = [gamut.shown_colours(avatar_seed(31, i)) for i in indices]
    assert set().union(*shown) == gamut.gamut_goals()
    assert len(gamut.gamut_goals()) == 29 and len(indices) <= 29
    for k in range(len(indices)):  # no kept avatar is redundant with the ones kept before it
        assert shown[k] - set().union(*shown[:k])
    assert indices == sorted(indices) == gamut.gamut_indices(31)


def test_synth_gamut_writes_exactly_those_avatars(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gamut, "gamut_goals", lambda: {"cloth=red", "cloth=blue"})  # two goals: a quick dataset
    want = gamut.gamut_indices(5)
    out = tmp_path / "data"
    assert main(["synth", "--out", str(out), "--gamut", "--seed", "5", "--views", "2", "--test-views", "0",
                 "--resolution", "32"]) == 0
    names = [f"avatar_{i:05d}" for i in want]
    assert json.loads((out / "index.json").read_text())["avatars"] == names
    colours = {json.loads((out / n / "attributes.json").read_text())["clothing"]["colour"] for n in names}
    assert colours >= {"red", "blue"} and f"wrote {len(want)} avatar(s)" in capsys.readouterr().out
    assert main(["synth", "--out", str(out), "--gamut", "--seed", "5", "--views", "2", "--test-views", "0",
                 "--resolution", "32", "--resume"]) == 0
    assert f"wrote {len(want)} avatar(s)" in capsys.readouterr().out
