"""`rodinhd train --recipe`: the whole chain at minute sizes (smoke), interrupted and continued, and its plan."""
from __future__ import annotations

import json

import pytest
from fit_helpers import cli

from engine.errors import UserError
from training.recipe import install, recipe_steps, run_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STEPS = ["synth", "stage1", "stage2", "base", "upsample", "build", "text_data", "text"]


def test_smoke_recipe_stops_and_continues_to_a_working_model(tmp_path):
    out = tmp_path / "recipe"

    def stop_after_base(argv):  # the base step runs, then "is interrupted"
        code = cli(argv)
        return 1 if argv[:3] == ["train", "--stage", "base"] else code

    with pytest.raises(UserError, match="'base' stopped"):
        run_recipe("smoke", out, runner=stop_after_base, log=lambda *_: None)
    assert list(json.loads((out / "recipe.json").read_text())["done"]) == ["synth", "stage1", "stage2"]

    calls = []
    state = run_recipe("smoke", out, runner=lambda argv: calls.append(argv) or cli(argv), log=lambda *_: None)
    assert list(state["done"]) == STEPS
    assert calls[0][:3] == ["train", "--stage", "base"] and calls[0][-1] == "--resume"  # continued, not redone
    assert [c[0] for c in calls] == ["train", "train", "model", "synth", "train"]

    from engine.pipeline import AvatarPipeline
    from engine.text import TextPortraitPipeline

    avatar = AvatarPipeline.from_pretrained(out / "model").unconditional(seed=0, steps=2)
    assert avatar.planes.shape[-1] == 16
    assert TextPortraitPipeline.from_pretrained(out / "text" / "model")("a person", n=1, steps=2)[0].size == (64, 64)

    install(out, tmp_path / "installed", None)
    assert (tmp_path / "installed" / "model_index.json").is_file()
    assert not list(tmp_path.glob("installed.tmp*"))
    assert run_recipe("smoke", out, runner=lambda argv: pytest.fail(f"ran {argv}"), log=lambda *_: None)


def test_recipe_refuses_another_recipes_folder(tmp_path):
    (tmp_path / "recipe.json").write_text(json.dumps({"recipe": "default", "done": {"synth": 1.0}}))
    with pytest.raises(UserError, match="holds recipe 'default'"):
        run_recipe("smoke", tmp_path, runner=lambda argv: 0, log=lambda *_: None)
    (tmp_path / "recipe.json").write_text("{broken")
    with pytest.raises(UserError, match="damaged"):
        run_recipe("smoke", tmp_path, runner=lambda argv: 0, log=lambda *_: None)


def test_default_recipe_plan(tmp_path, capsys):
    steps = recipe_steps("default", tmp_path, device="cuda", workers=2)
    assert [s.name for s in steps] == STEPS
    base = next(s for s in steps if s.name == "base").argv
    assert base[base.index("--steps") + 1] == "2018" and base[-2:] == ["--device", "cuda"]
    text = next(s for s in steps if s.name == "text").argv
    assert "batch_size=128" in text  # the shipped GPU text recipe
    assert [s.name for s in recipe_steps("default", tmp_path, with_text=False)][-1] == "build"
    assert cli(["train", "--recipe", "default", "--out", tmp_path, "--plan", "--no-text"]) == 0
    assert capsys.readouterr().out.count("rodinhd ") == 6
    assert cli(["train", "--recipe", "default", "--out", tmp_path, "--stage", "base"]) == 2
    assert cli(["train", "--out", tmp_path]) == 2  # neither --stage nor --recipe
