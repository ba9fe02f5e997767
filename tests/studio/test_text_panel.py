"""The studio's text panel under Xvfb: prompt → N candidates from a minute text model (+ a LoRA) → the chosen one
becomes the portrait → an avatar whose avatar.json records the prompt; an empty prompt and a bad LoRA are
messages, not crashes."""
from __future__ import annotations

from pathlib import Path

import pytest
from studio_helpers import tiny_model

from studio.library import Library
from studio.main_window import MainWindow

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    from engine.text import build_tiny_text_pipeline

    folder = tmp_path_factory.mktemp("text") / "tiny_text"
    build_tiny_text_pipeline(resolution=16, seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def window(qtbot, model, text_model, tmp_path, qsettings):
    qsettings.setValue("text_model", str(text_model))
    win = MainWindow(model, Library(tmp_path / "library"), qsettings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.pipeline is not None and not win.busy(), timeout=WAIT_MS)
    yield win
    win.cancel()
    qtbot.waitUntil(lambda: not win.busy(), timeout=WAIT_MS)


def test_prompt_to_candidates_to_avatar(qtbot, window):
    panel = window.text_panel
    panel.prompt.setPlainText("a woman with long red hair, wearing a blue t-shirt")
    panel.count.setValue(3)
    panel.steps.setValue(2)
    previews = []
    panel.show_previews = lambda images, show=panel.show_previews: previews.append(len(images)) or show(images)
    panel.generate_button.click()
    qtbot.waitUntil(lambda: len(panel.candidates) == 3 and not window.busy(), timeout=WAIT_MS)
    assert previews and previews[0] == 3  # the first step's estimates were drawn while sampling
    assert panel.grid.count() == 3 and panel.use_button.isEnabled()
    panel.grid.setCurrentRow(1)
    panel.use_button.click()
    qtbot.waitUntil(lambda: window.state.prepared is not None and not window.busy(), timeout=WAIT_MS)
    assert window.state.portrait.parent.name == "text_portraits"
    assert window.state.prepared.face is None  # taken as is: no detection on a generated portrait
    window.state.update_settings(steps=2, stages="base")
    window.generate()
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    text = window.state.avatar.metadata["text"]
    assert text["prompt"].startswith("a woman") and text["candidate"] == 1 and text["seed"] == 1


def test_empty_prompt_and_bad_lora_are_messages(qtbot, window, tmp_path):
    panel = window.text_panel
    panel.prompt.setPlainText("   ")
    panel.generate_button.click()
    assert window.message_bar.level == "error" and "prompt is empty" in window.message_bar.text()
    bad = tmp_path / "style.ckpt"
    bad.write_bytes(b"not a lora")
    window.set_lora(bad)
    panel.prompt.setPlainText("a man with short black hair")
    panel.steps.setValue(1)
    panel.generate_button.click()
    qtbot.waitUntil(lambda: not window.busy() and window.message_bar.level == "error", timeout=WAIT_MS)
    assert "safetensors" in window.message_bar.text() and panel.generate_button.isEnabled()


@pytest.fixture(scope="module")
def guided_text_model(tmp_path_factory) -> Path:
    """A minute text model whose folder names a default guidance other than the panel's initial 5."""
    from engine.text import build_tiny_text_pipeline

    folder = tmp_path_factory.mktemp("text") / "guided_text"
    build_tiny_text_pipeline(resolution=16, seed=0).save_pretrained(folder, extra={"guidance_default": 2.5})
    return folder


def _make_one(qtbot, window) -> dict:
    panel = window.text_panel
    panel.prompt.setPlainText("a man with short black hair")
    panel.count.setValue(1)
    panel.steps.setValue(1)
    panel.candidates = []
    panel.generate_button.click()
    qtbot.waitUntil(lambda: len(panel.candidates) == 1 and not window.busy(), timeout=WAIT_MS)
    return window._last_text


def test_typed_guidance_survives_the_lazy_model_load(qtbot, window, guided_text_model):
    """The model loads on the first Generate: a guidance the user typed before is the one used, not the model's
    default; a box the user never touched takes the model's default."""
    window.settings.setValue("text_model", str(guided_text_model))
    panel = window.text_panel
    assert window.text_pipeline is None and not panel.guidance_edited
    panel.guidance.setValue(7.5)  # typed before the model exists
    assert _make_one(qtbot, window)["guidance"] == pytest.approx(7.5)
    assert panel.guidance.value() == pytest.approx(7.5) and panel.guidance_edited
    assert window.text_pipeline.default_guidance == pytest.approx(2.5)

    window.text_pipeline = None  # load again (lazily) with the box untouched: the model's default is shown and used
    panel.set_default_guidance(5.0, force=True)
    assert _make_one(qtbot, window)["guidance"] == pytest.approx(2.5)
    assert panel.guidance.value() == pytest.approx(2.5) and not panel.guidance_edited


def test_choosing_a_text_model_shows_its_default_guidance(qtbot, window, guided_text_model, monkeypatch):
    from studio import text_actions

    panel = window.text_panel
    panel.guidance.setValue(9.0)
    monkeypatch.setattr(text_actions.QFileDialog, "getExistingDirectory", lambda *a, **k: str(guided_text_model))
    window.choose_text_model()
    qtbot.waitUntil(lambda: window.text_pipeline is not None and not window.busy(), timeout=WAIT_MS)
    assert panel.guidance.value() == pytest.approx(2.5) and not panel.guidance_edited  # the chosen model's value
    panel.guidance.setValue(3.0)  # edited after choosing: the user's value is used
    assert _make_one(qtbot, window)["guidance"] == pytest.approx(3.0)
