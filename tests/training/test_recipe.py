"""`rodinhd train --recipe`: the whole chain at minute sizes (smoke), interrupted and continued, and its plan."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from fit_helpers import cli

from engine.errors import UserError
from training import recipe as recipe_module
from training.recipe import ChildRunner, install, recipe_steps, run_recipe

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
    assert "max_minutes=7" in text and not any(a.startswith("batch_size") for a in text)  # the shipped recipe
    assert [s.name for s in recipe_steps("default", tmp_path, with_text=False)][-1] == "build"
    assert cli(["train", "--recipe", "default", "--out", tmp_path, "--plan", "--no-text"]) == 0
    assert capsys.readouterr().out.count("rodinhd ") == 6
    assert cli(["train", "--recipe", "default", "--out", tmp_path, "--stage", "base"]) == 2
    assert cli(["train", "--out", tmp_path]) == 2  # neither --stage nor --recipe


def test_plan_lines_are_copy_pastable_commands(tmp_path, capsys):
    import shlex

    assert cli(["train", "--recipe", "default", "--out", tmp_path, "--plan"]) == 0
    printed = [line.split(": rodinhd ", 1)[1] for line in capsys.readouterr().out.splitlines() if ": rodinhd " in line]
    assert [shlex.split(line) for line in printed] == [s.argv for s in recipe_steps("default", tmp_path)]
    text = recipe_steps("default", tmp_path)[-1].argv  # the CPU text step: a list value, quoted in the plan
    assert "block_out_channels=[16, 32, 64, 128]" in text and "max_minutes=45" in text


def test_parallel_steps_respect_their_order(tmp_path):
    """--jobs 2: base ‖ upsample and the text chain ‖ the avatar chain, each step only after what it needs."""
    import threading
    import time

    lock, live, events = threading.Lock(), [0], []

    def fake(argv):  # the step's name from its output folder
        name = {"data": "synth", "stage1": "stage1", "fits": "stage2", "base": "base", "upsample": "upsample",
                "model": "build", "text_data": "text_data", "text": "text"}[Path(argv[argv.index("--out") + 1]).name]
        with lock:
            live[0] += 1
            events.append(("start", name, live[0]))
        time.sleep(0.05)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.json").write_text("{}")  # what a finished synth leaves
        with lock:
            live[0] -= 1
            events.append(("end", name, live[0]))
        return 0

    state = run_recipe("default", tmp_path, runner=fake, log=lambda *_: None, jobs=2)
    assert sorted(state["done"]) == sorted(STEPS)
    order = [(kind, name) for kind, name, _ in events]
    for step in recipe_steps("default", tmp_path):
        for need in step.after:
            assert order.index(("end", need)) < order.index(("start", step.name)), (need, step.name)
    assert max(n for _, _, n in events) == 2
    starts = [name for kind, name, _ in events if kind == "start"]
    assert abs(starts.index("base") - starts.index("upsample")) == 1  # started together


def test_a_failed_step_stops_new_starts(tmp_path):
    started = []

    def fake(argv):
        started.append(argv[0:3])
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.json").write_text("{}")
        return 3 if argv[0] == "fit" else 0

    with pytest.raises(UserError, match="'stage1' stopped \\(exit code 3\\)"):
        run_recipe("default", tmp_path, runner=fake, log=lambda *_: None, jobs=2)
    done = json.loads((tmp_path / "recipe.json").read_text())["done"]
    assert "stage1" not in done and "stage2" not in done and "synth" in done


def test_a_step_that_exits_0_without_finishing_is_not_done(tmp_path):
    """A stopped run exits 0 (SIGTERM → checkpoint → "stopped"): the recipe reads its status, not the code."""
    def fake(argv):
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if argv[0] == "synth":
            (out / "index.json").write_text("{}")
        else:
            (out / "status.json").write_text(json.dumps({"state": "stopped"}))
        return 0

    with pytest.raises(UserError, match="'stage1' stopped \\(it did not finish\\)"):
        run_recipe("default", tmp_path, runner=fake, log=lambda *_: None, with_text=False)


def test_signals_are_forwarded_to_the_steps_while_the_recipe_runs(tmp_path):
    """SIGINT/SIGTERM reach the runner's signal_all during the recipe; the previous handlers come back after."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    forwarded = []

    class Runner:
        def __call__(self, argv):
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.getsignal(sig)(sig, None)  # what the interpreter calls on a signal
            out = Path(argv[argv.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "index.json").write_text("{}")
            return 0

        def signal_all(self, signum, _frame=None):
            forwarded.append(signum)

    run_recipe("smoke", tmp_path, runner=Runner(), log=lambda *_: None, with_text=False)
    assert forwarded[:2] == [signal.SIGINT, signal.SIGTERM] and len(forwarded) == 2 * 6
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_child_steps_run_in_their_own_session(monkeypatch):
    """A terminal's Ctrl-C must reach a step once (forwarded by the recipe), not also directly: a second SIGINT makes
    the step's run raise KeyboardInterrupt instead of checkpointing."""
    calls = []

    class FakeChild:
        def __init__(self, argv, **kwargs):
            calls.append((argv, kwargs))

        def wait(self):
            return 0

    monkeypatch.setattr(recipe_module.subprocess, "Popen", FakeChild)
    runner = ChildRunner()
    assert runner(["synth", "--out", "x"]) == 0
    argv, kwargs = calls[0]
    assert argv[-3:] == ["synth", "--out", "x"] and kwargs.get("start_new_session") is True
    assert not runner.live
