"""`rodinhd data check`: nothing on a good dataset; every injected fault, with the right severity and message."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_sources import disc_rgba, make_blender_scene, make_rodin_avatar, rodinhd, save
from training.data.check import check_dataset
from training.data.importing import import_dataset
from training.data.format import TEMP_PREFIX


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Two imported avatars: `a` (RodinHD, 5 views, 2 held out) and `b` (Blender, 3 train + 2 test)."""
    src = tmp_path / "src"
    make_rodin_avatar(src / "a", n=5)
    make_blender_scene(src / "b", n_train=3, n_test=2)
    import_dataset(src, tmp_path / "data", test_every=2, up="z")
    return tmp_path / "data"


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set_matrix(path: Path, frame: int, value) -> None:
    def edit(data):
        data["frames"][frame]["transform_matrix"] = value
    _edit_json(path, edit)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


# (fault name, mutation of the dataset, severity, path suffix, message fragment)
FAULTS = [
    ("missing image", lambda d: (d / "a/images/0001.png").unlink(), "error", "a/images/0001.png", "missing"),
    ("corrupt png", lambda d: (d / "b/images/0002.png").write_bytes(b"not a png at all"), "error",
     "b/images/0002.png", "not a readable PNG"),
    ("truncated png", lambda d: _truncate(d / "b/test/0000.png"), "error", "b/test/0000.png", "not a readable PNG"),
    ("not rigid", lambda d: _set_matrix(d / "a/transforms.json", 1, (2 * np.eye(4)).tolist()), "error",
     "a/transforms.json", "frame 1: transform_matrix is not rigid"),
    ("not 4x4", lambda d: _set_matrix(d / "a/transforms.json", 0, np.eye(3).tolist()), "error",
     "a/transforms.json", "frame 0: transform_matrix has shape [3, 3]"),
    ("non-finite", lambda d: _set_matrix(d / "b/transforms_test.json", 1, [[float("nan")] * 4] * 4), "error",
     "b/transforms_test.json", "frame 1: transform_matrix has non-finite values"),
    ("no matrix", lambda d: _edit_json(d / "a/transforms.json", lambda j: j["frames"][2].pop("transform_matrix")),
     "error", "a/transforms.json", "frame 2: missing key 'transform_matrix'"),
    ("bad fov", lambda d: _edit_json(d / "b/transforms.json", lambda j: j.update(camera_angle_x=4.0)), "error",
     "b/transforms.json", "camera_angle_x 4.0 is not in (0, pi)"),
    ("no fov", lambda d: _edit_json(d / "b/transforms.json", lambda j: j.pop("camera_angle_x")), "error",
     "b/transforms.json", "missing key 'camera_angle_x'"),
    ("bad json", lambda d: (d / "a/transforms.json").write_text("{\"frames\": [,]}"), "error",
     "a/transforms.json", "cannot be parsed"),
    ("missing transforms", lambda d: (d / "b/transforms.json").unlink(), "error", "b/transforms.json", "missing"),
    ("missing portrait", lambda d: (d / "a/portrait.png").unlink(), "error", "a/portrait.png", "missing"),
    ("missing avatar", lambda d: shutil.rmtree(d / "b"), "error", "b", "folder is missing"),
    ("missing index", lambda d: (d / "index.json").unlink(), "error", "index.json", "missing"),
    ("bad index", lambda d: (d / "index.json").write_text("[1, 2"), "error", "index.json", "not valid JSON"),
    ("not an index", lambda d: (d / "index.json").write_text('{"format": "other"}'), "error", "index.json",
     "not a rodinhd-dataset index"),
    ("rgb image", lambda d: save(disc_rgba(5)[..., :3], d / "a/images/0002.png"), "warning", "a/images/0002.png",
     "image mode RGB, expected RGBA"),
    ("wrong size", lambda d: save(disc_rgba(5, size=16), d / "b/images/0001.png"), "error", "b/images/0001.png",
     "size 16x16 differs from the other frames (32x32)"),
    ("empty alpha", lambda d: save(np.zeros((32, 32, 4), np.uint8), d / "a/images/0000.png"), "error",
     "a/images/0000.png", "alpha channel is empty"),
    ("duplicate path", lambda d: _edit_json(d / "b/transforms.json",
                                            lambda j: j["frames"][2].update(file_path="images/0001.png")),
     "error", "b/transforms.json", "frame 2: file_path 'images/0001.png' is used by more than one frame"),
    ("leakage", lambda d: _edit_json(d / "a/transforms_test.json",
                                     lambda j: j["frames"][0].update(file_path="images/0001.png")),
     "error", "a/transforms_test.json", "test frame uses training image images/0001.png"),
    ("outside", lambda d: _edit_json(d / "a/transforms.json", lambda j: j["frames"][1].update(file_path="../x.png")),
     "error", "a/transforms.json", "points outside the avatar folder"),
    ("no attributes", lambda d: (d / "b/attributes.json").unlink(), "warning", "b/attributes.json", "missing"),
    ("no caption", lambda d: (d / "a/caption.txt").unlink(), "warning", "a/caption.txt", "missing"),
]


def test_good_import_has_no_problems(dataset, monkeypatch, capsys):
    assert check_dataset(dataset) == []
    assert check_dataset(dataset, full=True) == []
    assert rodinhd(monkeypatch, "data", "check", dataset) == 0
    assert "0 error(s), 0 warning(s) - dataset OK" in capsys.readouterr().out


@pytest.mark.parametrize("name, mutate, severity, suffix, fragment", FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_is_reported(dataset, name, mutate, severity, suffix, fragment):
    mutate(dataset)
    problems = check_dataset(dataset, full=True)
    matching = [p for p in problems if str(p.path).endswith(suffix) and fragment in p.message]
    assert matching, f"{name}: expected {severity} on {suffix} '{fragment}', got {[str(p) for p in problems]}"
    assert {p.severity for p in matching} == {severity}
    assert len(problems) == 1 or name in ("missing image", "missing avatar", "missing index"), problems


def test_every_problem_is_reported_not_just_the_first(dataset, monkeypatch, capsys):
    for name in ("missing image", "corrupt png", "not rigid", "missing portrait", "no caption", "wrong size"):
        next(f for f in FAULTS if f[0] == name)[1](dataset)
    problems = check_dataset(dataset)
    assert sum(p.severity == "error" for p in problems) == 5 and sum(p.severity == "warning" for p in problems) == 1
    assert rodinhd(monkeypatch, "data", "check", dataset) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7 and out[-1].endswith("5 error(s), 1 warning(s)")
    assert any(line.startswith("error: ") and line.endswith("a/images/0001.png: missing") for line in out)


def test_missing_index_still_checks_the_avatars(dataset):
    (dataset / "index.json").unlink()
    (dataset / "b/portrait.png").unlink()
    messages = {(p.path.name, p.message.split(" (")[0]) for p in check_dataset(dataset)}
    assert ("portrait.png", "missing") in messages
    assert any(name == "index.json" for name, _ in messages)


def test_warnings_alone_exit_zero_and_leftover_temp_folder(dataset, monkeypatch, capsys):
    (dataset / f"{TEMP_PREFIX}a-xyz").mkdir()
    (dataset / "b/caption.txt").unlink()
    assert rodinhd(monkeypatch, "data", "check", dataset) == 0
    out = capsys.readouterr().out
    assert "interrupted import" in out and "0 error(s), 2 warning(s)" in out
    assert rodinhd(monkeypatch, "data", "check", dataset / "nope") == 2
    assert "does not exist" in capsys.readouterr().err


def test_pixels_are_sampled_unless_full(tmp_path):
    """A truncated frame outside the sample is found only with full=True; headers are always read."""
    make_rodin_avatar(tmp_path / "src" / "a", n=8)
    import_dataset(tmp_path / "src", tmp_path / "data")
    _truncate_keep_header(tmp_path / "data/a/images/0001.png")  # sampled frames: 0, 2, 5, 7
    assert check_dataset(tmp_path / "data") == []
    assert [p.path.name for p in check_dataset(tmp_path / "data", full=True)] == ["0001.png"]


def _truncate_keep_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as img:  # header still parses
        assert img.size == (32, 32)


def test_thousands_of_frames_are_checked_quickly(tmp_path):
    make_rodin_avatar(tmp_path / "src" / "a", n=2)
    import_dataset(tmp_path / "src", tmp_path / "data")
    avatar = tmp_path / "data" / "a"
    png = (avatar / "images/0001.png").read_bytes()
    transforms = json.loads((avatar / "transforms.json").read_text())
    frame = transforms["frames"][1]
    for i in range(2, 2000):
        (avatar / f"images/{i:04d}.png").write_bytes(png)
        transforms["frames"].append({**frame, "file_path": f"images/{i:04d}.png"})
    (avatar / "transforms.json").write_text(json.dumps(transforms))
    start = time.perf_counter()
    assert check_dataset(tmp_path / "data") == []
    assert time.perf_counter() - start < 5.0
