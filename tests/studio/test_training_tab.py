"""The Training dock in the real window (pytest-qt under Xvfb), driving real `rodinhd fit` processes on a minute
dataset: launch from the dialog, watch the curve grow, stop (checkpoint, "stopped"), resume to "finished"; a run
that crashes shows "failed" with its error; a SIGKILLed run leaves the studio alive and its metrics intact."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from studio_helpers import tiny_model

from studio.library import Library
from studio.main_window import MainWindow
from studio.model_from_run import model_choice
from training.cli.main import main as rodinhd
from training.runs import read_metrics

WAIT_MS = 90_000
# the tiny fitting of tests/training/fit_helpers.py, as the form's dotted fields
FLAT = {"decoder.channels": 8, "decoder.hidden": 16, "decoder.geo_features": 8, "render.samples": 8,
        "triplane_resolution": 16, "rays_per_step": 64, "occupancy_size": 16, "epochs": 2, "inner_steps": 3,
        "eval_views": 1, "eval_resolution": 16}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from engine.render.gl.context import unbind_current_egl

    out = tmp_path_factory.mktemp("data") / "data"
    assert rodinhd(["synth", "--out", str(out), "--count", "2", "--views", "6", "--test-views", "2",
                    "--resolution", "32", "--seed", "1"]) == 0
    unbind_current_egl()  # synth rendered with EGL on this thread; the window's GL needs it released
    return out


@pytest.fixture
def window(qtbot, tmp_path, qsettings, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the runs are child processes sharing 2 cores with the test
    qsettings.setValue("runs_folder", str(tmp_path / "runs"))
    win = MainWindow(None, Library(tmp_path / "library"), qsettings)
    qtbot.addWidget(win)
    win.resize(1100, 800)
    win.show()
    win.training_dock.show()
    qtbot.waitExposed(win)
    yield win
    win.training_panel.processes.kill_all()


def launch_fit(qtbot, window, data: Path, name: str, **fields) -> Path:
    """Fill the New run dialog for a tiny stage-1 fit and press Launch; returns the run folder."""
    panel = window.training_panel
    dialog = panel.new_run()
    dialog.set_kind("fit1")
    dialog.input_edits["--data"].setText(str(data))
    dialog.avatars_edit.setText("2")
    for path, value in {**FLAT, **fields}.items():
        dialog.form.set_value(path, value)
    out = panel.runs_folder() / name
    dialog.out_edit.setText(str(out))
    qtbot.mouseClick(dialog.launch_button, Qt.LeftButton)
    assert not dialog.isVisible(), dialog.errors.text()
    return out


def row(window, out: Path):
    return window.training_panel.table.rows.get(out)


def wait_state(qtbot, window, out: Path, *states: str) -> None:
    qtbot.waitUntil(lambda: row(window, out) is not None and row(window, out).state in states, timeout=WAIT_MS)


def test_launch_watch_stop_resume_finish(qtbot, window, dataset):
    panel = window.training_panel
    dialog = panel.new_run()
    dialog.set_kind("fit1")
    assert "Task replay: outer loops" in dialog.form.editors["epochs"].toolTip()  # docstring → tooltip
    dialog.input_edits["--data"].setText(str(dataset))
    dialog.form.set_value("epochs", "0")
    dialog.form.set_value("tv_weight", "lots")
    qtbot.mouseClick(dialog.launch_button, Qt.LeftButton)
    assert dialog.isVisible() and "tv_weight: expected a number" in dialog.errors.text()
    dialog.form.set_value("tv_weight", "2e-4")
    qtbot.mouseClick(dialog.launch_button, Qt.LeftButton)
    assert dialog.isVisible() and "epochs" in dialog.errors.text()
    assert not any(panel.runs_folder().glob("*"))  # nothing launched
    dialog.reject()

    out = launch_fit(qtbot, window, dataset, "fit", epochs=3, inner_steps=40)
    plot = panel.details.plot
    qtbot.waitUntil(lambda: panel.current_row() is not None and plot.curve_length("loss") >= 2, timeout=WAIT_MS)
    assert row(window, out).state == "running" and row(window, out).kind_label == "fit stage 1"
    assert panel.buttons["stop"].isEnabled() and not panel.buttons["resume"].isEnabled()
    qtbot.mouseClick(panel.buttons["stop"], Qt.LeftButton)
    wait_state(qtbot, window, out, "stopped")
    qtbot.waitUntil(lambda: panel.buttons["resume"].isEnabled(), timeout=WAIT_MS)
    stopped_at = row(window, out).step
    assert stopped_at < 240
    qtbot.mouseClick(panel.buttons["resume"], Qt.LeftButton)
    wait_state(qtbot, window, out, "finished")
    finished = row(window, out)
    assert (finished.step, finished.total) == (240, 240)
    qtbot.waitUntil(lambda: json.loads((out / "launch.json").read_text())["exit_code"] == 0, timeout=WAIT_MS)
    launch = json.loads((out / "launch.json").read_text())
    assert launch["launches"] == 2 and launch["argv"][-1] == "--resume"
    qtbot.waitUntil(lambda: plot.curve_length("psnr/avatar_00001") >= 1, timeout=WAIT_MS)  # forgetting monitor
    assert plot.curve_length("psnr/avatar_00000") > plot.curve_length("psnr/avatar_00001")
    assert plot.curve_length("loss") >= 20
    panel.details.log.source.setCurrentIndex(0)
    assert "run resumed" in panel.details.log.text.toPlainText()
    assert not panel.buttons["resume"].isEnabled() and "finished" in panel.buttons["resume"].toolTip()


def test_crashed_and_killed_runs(qtbot, window, dataset, tmp_path, monkeypatch):
    panel = window.training_panel
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    for image in (broken / "avatar_00000" / "images").glob("*.png"):
        image.write_bytes(b"not a png")  # read by the run once it has started: it fails inside the run
    crash = launch_fit(qtbot, window, broken, "crash")
    killed = launch_fit(qtbot, window, dataset, "killed", epochs=4, inner_steps=400)

    wait_state(qtbot, window, crash, "failed")
    panel.table.select_path(crash)
    panel.details.setCurrentWidget(panel.details.log)
    reason = panel.details.log.reason
    qtbot.waitUntil(lambda: reason.isVisible() and "cannot read image" in reason.text(), timeout=WAIT_MS)
    assert "0000.png" in row(window, crash).reason
    # once its process has ended, the window says so too
    qtbot.waitUntil(lambda: any("Run crash failed: UserError" in text for _, text in window.message_bar.history),
                    timeout=WAIT_MS)

    qtbot.waitUntil(lambda: len(read_metrics(killed / "metrics.jsonl")) >= 3, timeout=WAIT_MS)
    pid = json.loads((killed / "status.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_state(qtbot, window, killed, "failed", "stopped")
    lines = len((killed / "metrics.jsonl").read_text().splitlines())
    assert lines >= 3 and len(read_metrics(killed / "metrics.jsonl")) >= lines - 1  # at most one cut line
    qtbot.wait(1500)  # a few more polls: nothing rewrites the file, the window lives on
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == lines
    assert window.isVisible() and "killed" in row(window, killed).reason

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    panel.table.select_path(crash)
    qtbot.mouseClick(panel.buttons["delete"], Qt.LeftButton)
    assert not crash.exists() and panel.table.rows.get(crash) is None


def fake_base_run(folder: Path, finished: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"state": "finished", "kind": "diffusion_base",
                                                    "started": "2026-01-01T10:00:00+00:00"}))
    if finished:
        (folder / "training.json").write_text("{}")
    return folder


def test_use_this_model_builds_then_loads_a_base_run(qtbot, window, tmp_path, monkeypatch):
    """The real choice and QProcess plumbing; the `rodinhd model build` command itself is swapped for one that
    copies a minute model (a real build needs a trained base run; tests/training cover the command)."""
    import studio.widgets.training_panel as training_panel

    panel = window.training_panel
    model = tiny_model(tmp_path / "tiny")
    script = {"code": "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])"}

    def fake_build(selected):
        choice = model_choice(selected)
        if choice.action == "build":
            choice.argv = [sys.executable, "-c", script["code"], str(model), str(choice.building)]
        return choice

    monkeypatch.setattr(training_panel, "model_choice", fake_build)
    run = fake_base_run(panel.runs_folder() / "base", finished=False)
    panel.poll(force=True)
    panel.table.select_path(run)
    qtbot.mouseClick(panel.buttons["use"], Qt.LeftButton)
    assert "has not finished" in window.message_bar.text()
    (run / "training.json").write_text("{}")
    qtbot.mouseClick(panel.buttons["use"], Qt.LeftButton)
    qtbot.waitUntil(lambda: window.pipeline is not None and not window.busy(), timeout=WAIT_MS)
    assert window.pipeline.info["path"] == str(run / "model")  # built under a temp name, then renamed
    assert (run / "model" / "model_index.json").is_file() and not (run / ".model.building").exists()

    script["code"] = "import sys; print('rodinhd model build: error: boom'); sys.exit(2)"
    broken = fake_base_run(panel.runs_folder() / "base2")
    panel.poll(force=True)
    panel.table.select_path(broken)
    qtbot.mouseClick(panel.buttons["use"], Qt.LeftButton)
    qtbot.waitUntil(lambda: "Could not build a model from base2" in window.message_bar.text(), timeout=WAIT_MS)
    assert "boom" in window.message_bar.text() and not (broken / ".model.building").exists()


def test_samples_view_shows_the_newest_images_as_they_appear(qtbot, tmp_path):
    from PIL import Image

    from studio.widgets.samples_view import SHOWN, SamplesView

    view = SamplesView()
    qtbot.addWidget(view)
    samples = tmp_path / "samples"
    samples.mkdir()
    for step in range(SHOWN + 1):
        Image.new("RGB", (8, 8), (step * 30, 0, 0)).save(samples / f"step_{step:06d}.png")
        os.utime(samples / f"step_{step:06d}.png", (1000 + step, 1000 + step))
    (samples / "partial.png").write_bytes(b"half a png")  # still being written: skipped, retried next poll
    os.utime(samples / "partial.png", (2000, 2000))
    view.set_folder(samples)
    names = [view.list.item(i).text() for i in range(view.list.count())]
    assert names == [f"step_{s:06d}.png" for s in range(SHOWN, 1, -1)]  # newest first; the oldest ones dropped
    Image.new("RGB", (8, 8)).save(samples / "partial.png")  # now complete (and the newest)
    view.refresh()
    names = [view.list.item(i).text() for i in range(view.list.count())]
    assert names == ["partial.png"] + [f"step_{s:06d}.png" for s in range(SHOWN, 1, -1)]
