"""The real studio window, driven headless under Xvfb with pytest-qt: drop a portrait, generate with a minute
model, orbit with the mouse, move the guidance slider, export, cancel with Esc, and survive bad files."""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication
from image_helpers import faceless_photo, save_fully_transparent_palette_png
from studio_helpers import tiny_model

from engine.assets import asset_path
from studio.library import Library
from studio.main_window import MainWindow

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny", timesteps=1000)


@pytest.fixture
def window(qtbot, model, tmp_path, qsettings):
    win = MainWindow(model, Library(tmp_path / "library"), qsettings)
    qtbot.addWidget(win)
    win.resize(900, 600)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.pipeline is not None and not win.busy(), timeout=WAIT_MS)
    yield win
    win.cancel()
    qtbot.waitUntil(lambda: not win.busy(), timeout=WAIT_MS)


def drop(window, path: Path) -> None:
    """Drag-enter then drop, as the window manager would deliver them (QApplication.sendEvent does not deliver
    a Drop outside a real drag, so the handlers are called directly with real events)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    window.dropEvent(QDropEvent(QPointF(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))


def settle(qtbot, window) -> None:
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)


def frame(window) -> np.ndarray:
    image = window.viewer.grabFramebuffer().convertToFormat(window.viewer.grabFramebuffer().Format.Format_RGB888)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
        :, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def generate(qtbot, window, **settings) -> None:
    window.state.update_settings(steps=2, **settings)
    window.generate()
    settle(qtbot, window)
    assert window.state.avatar is not None, window.message_bar.text()


def portrait(tmp_path) -> Path:
    path = tmp_path / "astronaut.png"
    shutil.copy(asset_path("portraits", "astronaut.png"), path)
    return path


def test_drop_generate_orbit_and_library(qtbot, window, tmp_path):
    drop(window, portrait(tmp_path))
    settle(qtbot, window)
    assert window.state.portrait is not None, window.message_bar.history
    assert window.state.portrait.name == "astronaut.png" and window.state.prepared is not None
    assert window.state.prepared.image.size == (256, 256)
    assert not window.portrait_panel.input_view.pixmap().isNull()
    generate(qtbot, window)
    avatar = window.state.avatar
    assert avatar.metadata["mode"] == "portrait" and "preprocess" in avatar.metadata
    assert avatar.metadata["input"].endswith("astronaut.png") and len(avatar.metadata["input_hash"]) == 16
    entries = window.library.entries()
    assert len(entries) == 1 and entries[0].thumbnail is not None and entries[0].model_input is not None
    assert window.library_panel.list.count() == 1
    qtbot.waitUntil(window.viewer.refined, timeout=WAIT_MS)
    before = frame(window)
    assert before.std() > 1.0, "the avatar must be visible"
    viewer = window.viewer
    centre = QPointF(viewer.width() / 2, viewer.height() / 2)
    for kind, pos, buttons in ((QMouseEvent.MouseButtonPress, centre, Qt.LeftButton),
                               (QMouseEvent.MouseMove, centre + QPointF(80, 10), Qt.LeftButton),
                               (QMouseEvent.MouseButtonRelease, centre + QPointF(80, 10), Qt.NoButton)):
        button = Qt.LeftButton if kind != QMouseEvent.MouseMove else Qt.NoButton
        QApplication.sendEvent(viewer, QMouseEvent(kind, pos, viewer.mapToGlobal(pos), button, buttons,
                                                   Qt.NoModifier))
    assert window.state.camera.azimuth == pytest.approx(360 - 80 * 0.4)
    qtbot.waitUntil(viewer.refined, timeout=WAIT_MS)
    after = frame(window)
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 1.0
    radius = window.state.camera.radius
    QApplication.sendEvent(viewer, QWheelEvent(centre, viewer.mapToGlobal(centre), QPoint(), QPoint(0, 120),
                                               Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False))
    assert window.state.camera.radius == pytest.approx(radius * 0.9)


def test_regenerate_reproduces_and_compare_shows_both(qtbot, window, tmp_path):
    drop(window, portrait(tmp_path))
    settle(qtbot, window)
    generate(qtbot, window, seed=11, stages="base")
    first = window.state.avatar
    window.state.update_settings(seed=99, guidance=3.0)
    entry = window.library.entries()[0]
    window.regenerate_entry(entry)
    settle(qtbot, window)
    again = window.state.avatar
    assert again is not first and again.metadata["seed"] == 11 and window.state.settings.guidance == 1.3
    assert torch.equal(again.planes, first.planes)  # same input, seed and settings → the same avatar
    older, newer = window.library.entries()[1], window.library.entries()[0]
    window.compare_entries(older, newer)
    settle(qtbot, window)
    dialog = window.compare_dialog
    assert len(dialog.views) == 2 and all(not v.pixmap().isNull() for v in dialog.views)
    window.open_entry(older)
    assert torch.equal(window.state.avatar.planes, first.planes.half().float())


def test_guidance_slider_and_seed_widgets_drive_the_state(qtbot, window):
    panel = window.generation_panel
    panel.guidance_slider.setValue(35)
    assert window.state.settings.guidance == pytest.approx(3.5)
    assert panel.guidance_box.value() == pytest.approx(3.5)
    window.state.update_settings(guidance=2.0)
    assert panel.guidance_slider.value() == 20
    panel.seed_box.setValue(1234)
    assert window.state.settings.seed == 1234
    panel.stages_box.setCurrentIndex(panel.stages_box.findData("base"))
    assert window.state.settings.stages == "base"


def test_exports_png_gif_glb(qtbot, window, tmp_path):
    generate(qtbot, window, unconditional=True, stages="base")
    out = tmp_path / "exports"
    for kind, name, options in (("png", "view.png", {"resolution": 64}), ("gif", "spin.gif",
                                {"resolution": 32, "frames": 4}), ("glb", "mesh.glb", {"grid": 32})):
        window.export_current(kind, out / name, **options)
        settle(qtbot, window)
        assert (out / name).is_file(), window.message_bar.text()
    assert Image.open(out / "view.png").size == (64, 64)
    assert iio.imread(out / "spin.gif", index=None).shape[:3] == (4, 32, 32)
    mesh = trimesh.load(out / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and np.abs(mesh.vertices).max() <= 1.0 + 1e-4
    record = json.loads((out / "avatar.json").read_text())
    assert set(record["exports"]) >= {"view.png", "spin.gif", "mesh.glb"}


def test_escape_cancels_a_running_generation(qtbot, window):
    window.state.update_settings(unconditional=True, stages="base", sampler="ddpm", steps=1000)
    window.activateWindow()
    qtbot.waitActive(window)
    window.generate()
    qtbot.waitUntil(lambda: window.generation_panel.progress.value() >= 1, timeout=WAIT_MS)
    qtbot.keyClick(window.viewer, Qt.Key_Escape)
    settle(qtbot, window)
    assert window.state.avatar is None and window.library.entries() == []
    assert "cancelled" in window.status_label.text()


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_bad_files_give_a_message_and_keep_the_avatar(qtbot, window, tmp_path):
    generate(qtbot, window, unconditional=True, stages="base")
    avatar = window.state.avatar
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(Path(asset_path("portraits", "astronaut.png")).read_bytes()[:300])
    (tmp_path / "huge.png").write_bytes(png_header_only(20000, 20000))
    flat = tmp_path / "wall.png"
    Image.new("RGB", (300, 300), (120, 160, 200)).save(flat)
    empty = save_fully_transparent_palette_png(tmp_path / "empty.png")
    listed = len(window.library.entries())
    faceless = tmp_path / "disc.png"
    Image.fromarray(faceless_photo()).save(faceless)
    for path, words in ((tmp_path / "notes.txt", "notes.txt"), (tmp_path / "broken.png", "broken.png"),
                        (tmp_path / "huge.png", "too large"), (flat, "one flat colour"),
                        (empty, "fully transparent"), (faceless, "no face")):
        drop(window, path)
        settle(qtbot, window)
        assert window.message_bar.level == "error" and words in window.message_bar.text(), window.message_bar.text()
        assert window.state.avatar is avatar and len(window.library.entries()) == listed
    assert window.state.portrait == faceless and window.state.prepared is None  # kept for a manual crop
    window.state.update_settings(unconditional=False)
    assert not window.generation_panel.generate_button.isEnabled()
    window.change_portrait_options({"crop": (50, 50, 200)})  # the manual crop makes it usable
    settle(qtbot, window)
    assert window.state.prepared is not None and window.generation_panel.generate_button.isEnabled()


def test_a_nan_generation_is_a_message_not_an_avatar(qtbot, window):
    generate(qtbot, window, unconditional=True, stages="base")
    avatar, entries = window.state.avatar, window.library.entries()
    with torch.no_grad():  # this window's copy of the model now samples NaN
        list(window.pipeline.base.unet.parameters())[-1].fill_(float("nan"))
    window.generate()
    settle(qtbot, window)
    assert window.message_bar.level == "error", window.message_bar.text()
    assert "the base stage produced" in window.message_bar.text() and "NaN" in window.message_bar.text()
    assert window.state.avatar is avatar and window.library.entries() == entries  # nothing saved or listed


def test_screenshot_command(qtbot, model, tmp_path):
    from studio.app import main

    out = tmp_path / "shot.png"
    assert main(["--model", str(model), "--portrait", str(portrait(tmp_path)), "--screenshot", str(out),
                 "--size", "1280x800", "--library", str(tmp_path / "lib")]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape[:2] == (800, 1280) and image.std() > 5


def test_export_and_crop_dialogs(qtbot, tmp_path):
    from studio.widgets.crop_dialog import CropDialog
    from studio.widgets.export_dialog import ExportDialog

    dialog = ExportDialog(tmp_path, "head")
    qtbot.addWidget(dialog)
    dialog.kind.setCurrentIndex(dialog.kind.findData("glb"))
    request = dialog.request()
    assert request.kind == "glb" and request.path == tmp_path / "head.glb" and set(request.options) == {"grid"}
    assert not dialog.form.isRowVisible(dialog.resolution)
    dialog.kind.setCurrentIndex(dialog.kind.findData("gif"))
    assert dialog.request().path.suffix == ".gif" and set(dialog.request().options) == {
        "resolution", "frames", "background"}
    crop = CropDialog(asset_path("portraits", "astronaut.png"), None)
    qtbot.addWidget(crop)
    assert crop.crop() == (0, 0, 512)
    canvas = crop.canvas
    start, end = QPointF(10, 20), QPointF(110, 60)
    for kind, pos, button in ((QMouseEvent.MouseButtonPress, start, Qt.LeftButton),
                              (QMouseEvent.MouseMove, end, Qt.NoButton)):
        QApplication.sendEvent(canvas, QMouseEvent(kind, pos, canvas.mapToGlobal(pos), button, Qt.LeftButton,
                                                   Qt.NoModifier))
    x, y, size = crop.crop()
    scale = canvas.scale
    assert (x, y) == (round(10 / scale), round(20 / scale)) and size == round(100 / scale)
