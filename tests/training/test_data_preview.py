"""`rodinhd data preview`: contact sheet size follows the grid arithmetic; every cell shows its avatar."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_sources import make_rodin_avatar, rodinhd
from engine.errors import UserError
from training.data.importing import import_dataset
from training.data.preview import BACKGROUND, LABEL_HEIGHT, contact_sheet, grid_shape

CELL = 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Three RodinHD avatars with six views each (different colours per seed)."""
    tmp = tmp_path_factory.mktemp("preview")
    for k in range(3):
        make_rodin_avatar(tmp / "src" / f"av{k}", n=6, seed=100 * k)
    import_dataset(tmp / "src", tmp / "data")
    return tmp / "data"


def _cell(sheet: np.ndarray, col: int, row: int, label_h: int) -> np.ndarray:
    y = row * (CELL + label_h)
    return sheet[y:y + CELL, col * CELL:(col + 1) * CELL]


def _shows_something(pixels: np.ndarray) -> bool:
    return bool((np.abs(pixels.astype(int) - BACKGROUND).sum(-1) > 30).sum() > 20)


def test_portrait_grid_size_and_cells(dataset, tmp_path):
    out = contact_sheet(dataset, tmp_path / "sheet.png", cell=CELL)
    sheet = np.asarray(Image.open(out))
    assert grid_shape(3, 0, None) == (2, 2)
    assert sheet.shape == (2 * (CELL + LABEL_HEIGHT), 2 * CELL, 3)
    for k in range(3):
        assert _shows_something(_cell(sheet, k % 2, k // 2, LABEL_HEIGHT)), f"cell {k} is empty"
    assert not _shows_something(_cell(sheet, 1, 1, LABEL_HEIGHT))  # 4th cell: no avatar
    label_strip = sheet[CELL:CELL + LABEL_HEIGHT, :CELL]
    assert (label_strip != BACKGROUND).any()  # the avatar id is written under the cell


def test_portrait_cell_is_the_portrait(dataset, tmp_path):
    out = contact_sheet(dataset, tmp_path / "one.png", avatars=["av1"], cell=32, label=False)
    sheet = np.asarray(Image.open(out)).astype(float)
    rgba = np.asarray(Image.open(dataset / "av1" / "portrait.png")).astype(float)
    expected = rgba[..., :3] * rgba[..., 3:] / 255 + np.array(BACKGROUND) * (1 - rgba[..., 3:] / 255)
    assert sheet.shape == (32, 32, 3)
    assert np.abs(sheet - expected).max() <= 1.0  # same size: composited over grey, not resampled


def test_rows_of_views_and_no_labels(dataset, tmp_path):
    out = contact_sheet(dataset, tmp_path / "views.png", views_per_avatar=3, cell=CELL, label=False)
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (3 * CELL, 4 * CELL, 3)
    for row in range(3):
        cells = [_cell(sheet, col, row, 0) for col in range(4)]
        assert all(_shows_something(c) for c in cells)
        assert not np.array_equal(cells[0], cells[1])  # view cells are other views than the portrait


def test_columns_and_max_avatars(dataset, tmp_path):
    sheet = Image.open(contact_sheet(dataset, tmp_path / "row.png", cell=CELL, columns=3, label=False))
    assert sheet.size == (3 * CELL, CELL)
    sheet = Image.open(contact_sheet(dataset, tmp_path / "two.png", cell=CELL, max_avatars=2))
    assert sheet.size == (2 * CELL, CELL + LABEL_HEIGHT)
    with pytest.raises(UserError, match="no avatar"):
        contact_sheet(dataset, tmp_path / "x.png", avatars=["nobody"])


def test_cli_preview(dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli.png"
    argv = ["data", "preview", dataset, "--out", out, "--views", "2", "--cell", "32", "--max-avatars", "2"]
    assert rodinhd(monkeypatch, *argv) == 0
    assert Image.open(out).size == (3 * 32, 2 * (32 + LABEL_HEIGHT))
    assert f"wrote {out}" in capsys.readouterr().out
    assert rodinhd(monkeypatch, "data", "preview", tmp_path, "--out", out) == 2  # no index.json there
    assert "no index.json" in capsys.readouterr().err
    assert rodinhd(monkeypatch, "data", "preview", dataset, "--out", out, "--cell", "4") == 2
