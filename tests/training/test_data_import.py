"""`rodinhd data import`: NeRF-synthetic (Blender, instant-ngp) and RodinHD layouts → our dataset format."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from data_sources import (
    BLENDER_EYES, SIZE, blender_c2w, make_blender_scene, make_ngp_scene, make_rodin_avatar, rodinhd,
)
from engine.cameras import focal_from_fov, fov_from_focal, is_rigid, look_at
from engine.errors import UserError
from training.data.format import read_index, read_transforms
from training.data.import_rodin import RODIN_SCALE
from training.data.importing import import_dataset

Y_UP = np.array([0.0, 1.0, 0.0])


def test_blender_scene_z_up_cameras_images_and_splits(tmp_path):
    src = make_blender_scene(tmp_path / "lego", n_train=3, n_test=2, n_val=1)
    result = import_dataset(src, tmp_path / "out", up="z")
    av = tmp_path / "out" / "lego"
    assert result.avatars == ["lego"] and read_index(tmp_path / "out")["avatars"] == ["lego"]
    train = read_transforms(av / "transforms.json")
    assert train.camera_angle_x == pytest.approx(0.6911112070083618)
    assert [f.file_path for f in train.frames] == ["images/0000.png", "images/0001.png", "images/0002.png"]
    # Blender's camera at (0, -4, 0) in Z-up, looking at the origin, is the frontal camera on +Z in Y-up.
    np.testing.assert_allclose(train.frames[0].c2w, look_at(np.array([0, 0, 4.0]), np.zeros(3), Y_UP), atol=1e-7)
    np.testing.assert_allclose(train.frames[1].c2w[:3, 3], [4, 0, 0], atol=1e-7)
    np.testing.assert_allclose(train.frames[2].c2w[:3, 3], [0, 1, -4], atol=1e-7)
    assert all(is_rigid(f.c2w) for f in train.frames)
    for i, frame in enumerate(train.frames):  # RGBA PNGs are copied bit-exactly
        assert (av / frame.file_path).read_bytes() == (src / "train" / f"r_{i}.png").read_bytes()
    assert (av / "portrait.png").read_bytes() == (av / "images/0000.png").read_bytes()
    test = read_transforms(av / "transforms_test.json")  # the test split wins over val
    assert [f.file_path for f in test.frames] == ["test/0000.png", "test/0001.png"]
    assert (av / "test/0001.png").read_bytes() == (src / "test" / "r_1.png").read_bytes()
    attributes = json.loads((av / "attributes.json").read_text())
    assert attributes["source"] == "nerf-synthetic" and attributes["options"]["up"] == "z"
    assert (av / "caption.txt").read_text().strip() == "lego"
    assert read_index(tmp_path / "out")["source"]["importer"] == "nerf"


def test_blender_default_up_y_keeps_poses_and_scale_multiplies_translation(tmp_path):
    src = make_blender_scene(tmp_path / "scene", n_test=0, n_val=0)
    import_dataset(src, tmp_path / "out", scale=0.5)
    frames = read_transforms(tmp_path / "out" / "scene" / "transforms.json").frames
    for frame, eye in zip(frames, BLENDER_EYES):
        expected = blender_c2w(eye)
        expected[:3, 3] *= 0.5
        np.testing.assert_allclose(frame.c2w, expected, atol=1e-7)
    assert not (tmp_path / "out" / "scene" / "transforms_test.json").exists()


def test_val_split_is_the_test_split_when_there_is_no_test(tmp_path):
    src = make_blender_scene(tmp_path / "scene", n_test=0, n_val=1)
    import_dataset(src, tmp_path / "out")
    av = tmp_path / "out" / "scene"
    assert len(read_transforms(av / "transforms_test.json").frames) == 1
    assert (av / "test/0000.png").read_bytes() == (src / "val" / "r_0.png").read_bytes()


def test_portrait_frame_becomes_view_zero(tmp_path):
    src = make_blender_scene(tmp_path / "scene", n_train=3)
    import_dataset(src, tmp_path / "out", portrait_frame=2)
    av = tmp_path / "out" / "scene"
    frames = read_transforms(av / "transforms.json").frames
    assert (av / "portrait.png").read_bytes() == (src / "train/r_2.png").read_bytes()
    assert (av / "images/0000.png").read_bytes() == (src / "train/r_2.png").read_bytes()
    np.testing.assert_allclose(frames[0].c2w, blender_c2w(BLENDER_EYES[2]), atol=1e-7)
    np.testing.assert_allclose(frames[1].c2w, blender_c2w(BLENDER_EYES[0]), atol=1e-7)
    with pytest.raises(UserError, match="portrait frame 3 out of range"):
        import_dataset(src, tmp_path / "out2", portrait_frame=3)


def test_instant_ngp_scene_focal_and_rgb_to_rgba(tmp_path):
    src = make_ngp_scene(tmp_path / "fox", n=3, fl_x=40.0)
    result = import_dataset(src, tmp_path / "out")
    av = tmp_path / "out" / "fox"
    train = read_transforms(av / "transforms.json")
    assert train.camera_angle_x == pytest.approx(fov_from_focal(40.0, SIZE))
    assert focal_from_fov(train.camera_angle_x, SIZE) == pytest.approx(40.0)  # round trip
    assert json.loads((av / "transforms.json").read_text())["aabb_scale"] == 4
    with Image.open(av / "images/0001.png") as out, Image.open(src / "images/001.jpg") as jpg:
        assert out.mode == "RGBA"
        pixels = np.asarray(out)
        np.testing.assert_array_equal(pixels[..., :3], np.asarray(jpg.convert("RGB")))
        assert (pixels[..., 3] == 255).all()
    assert any("converted to RGBA" in w for w in result.warnings)
    assert not (av / "transforms_test.json").exists()


def test_rodin_avatar_cameras_scale_and_test_every(tmp_path):
    src = make_rodin_avatar(tmp_path / "rodin_0001", n=5, radius=46.0, focal_length=50.0, sensor_width=36.0)
    import_dataset(src, tmp_path / "out", test_every=2)
    av = tmp_path / "out" / "rodin_0001"
    train = read_transforms(av / "transforms.json")
    test = read_transforms(av / "transforms_test.json")
    assert len(train.frames) == 3 and len(test.frames) == 2  # views 0, 1, 3 | 2, 4
    focal_px = 50.0 / 36.0 * SIZE
    assert train.camera_angle_x == pytest.approx(fov_from_focal(focal_px, SIZE))
    assert train.camera_angle_x == pytest.approx(2 * math.atan(36.0 / (2 * 50.0)))
    # View 0: Blender (0, -46, 0) → Y-up (0, 0, 46) → × 0.6/23 = (0, 0, 1.2), facing the origin.
    expected = look_at(np.array([0, 0, 46.0 * RODIN_SCALE]), np.zeros(3), Y_UP)
    np.testing.assert_allclose(train.frames[0].c2w, expected, atol=1e-7)
    assert 46.0 * RODIN_SCALE == pytest.approx(1.2)
    for frame, view in zip(train.frames + test.frames, [0, 1, 3, 2, 4]):
        az = 2 * np.pi * view / 5  # the fixture's Blender eye: 46 (sin az, -cos az, 0.1 view), Z-up
        expected_eye = 46.0 * RODIN_SCALE * np.array([np.sin(az), 0.1 * view, np.cos(az)])
        np.testing.assert_allclose(frame.c2w[:3, 3], expected_eye, atol=1e-7)
        assert is_rigid(frame.c2w)
    assert (av / "portrait.png").read_bytes() == (src / "img_proc_fg_000000.png").read_bytes()
    assert (av / "images/0002.png").read_bytes() == (src / "img_proc_fg_000003.png").read_bytes()
    assert (av / "test/0001.png").read_bytes() == (src / "img_proc_fg_000004.png").read_bytes()
    assert json.loads((av / "attributes.json").read_text())["source"] == "rodinhd"


def test_folder_of_avatars_mixed_kinds_and_index(tmp_path):
    src = tmp_path / "src"
    make_rodin_avatar(src / "b avatar", n=3, seed=1)
    make_rodin_avatar(src / "a", n=3, seed=2)
    make_blender_scene(src / "c", n_train=2, n_test=1)
    (src / "notes").mkdir()  # neither layout: skipped
    result = import_dataset(src, tmp_path / "out")
    assert result.avatars == ["a", "b_avatar", "c"]
    assert result.kinds == {"a": "rodin", "b_avatar": "rodin", "c": "nerf"}
    assert result.warnings == []  # RGBA PNGs, frontal view 0: nothing to warn about
    index = read_index(tmp_path / "out")
    assert index["avatars"] == ["a", "b_avatar", "c"]
    assert index["source"] == {"importer": "mixed", "from": str(src.resolve())}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b_avatar", "c", "index.json"]
    with pytest.raises(UserError, match="no RodinHD avatar"):
        import_dataset(src / "c", tmp_path / "out2", kind="rodin")


def test_warnings_for_what_our_convention_cannot_hold(tmp_path):
    ngp = make_ngp_scene(tmp_path / "src" / "ngp")
    meta = json.loads((ngp / "transforms.json").read_text())
    (ngp / "transforms.json").write_text(json.dumps({**meta, "cx": 20.0}))
    rodin = make_rodin_avatar(tmp_path / "src" / "side", n=2)
    meta = json.loads((rodin / "metadata_000000.json").read_text())
    meta["cameras"][0]["transformation"] = blender_c2w((46.0, 0.0, 0.0)).tolist()  # view 0 seen from the side
    (rodin / "metadata_000000.json").write_text(json.dumps(meta))
    warnings = import_dataset(tmp_path / "src", tmp_path / "out").warnings
    assert any(w.startswith("ngp: principal point cx=20.0 is off-centre") for w in warnings)
    assert any(w.startswith("side: view 0 is at [1.2, 0.0, 0.0], not on the +Z axis") for w in warnings)


def test_failed_import_leaves_nothing_that_looks_complete(tmp_path):
    src = make_rodin_avatar(tmp_path / "src" / "bad", n=4)
    (src / "img_proc_fg_000002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="img_proc_fg_000002.png: cannot decode image"):
        import_dataset(src, out)
    assert list(out.iterdir()) == []  # no avatar folder, no temp folder, no index.json


def test_cli_import_exit_codes(tmp_path, monkeypatch, capsys):
    src = make_rodin_avatar(tmp_path / "src" / "av", n=3)
    out = tmp_path / "out"
    assert rodinhd(monkeypatch, "data", "import", src.parent, "--out", out, "--test-every", "2") == 0
    assert "imported 1 avatar(s) (rodin)" in capsys.readouterr().out
    assert rodinhd(monkeypatch, "data", "import", src.parent, "--out", out) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert rodinhd(monkeypatch, "data", "import", src.parent, "--out", out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["av", "index.json"]
    assert not (out / "av" / "transforms_test.json").exists()  # the old avatar was replaced, not merged
    assert rodinhd(monkeypatch, "data", "import", tmp_path / "nowhere", "--out", tmp_path / "o2") == 2
    assert "does not exist" in capsys.readouterr().err
    assert rodinhd(monkeypatch, "data", "import", src, "--out", tmp_path / "o3", "--up", "z") == 2
    assert "applies to nerf imports only" in capsys.readouterr().err
    assert rodinhd(monkeypatch, "data", "import", src, "--out", tmp_path / "o4", "--scale", "-1") == 2
    assert rodinhd(monkeypatch, "data", "import", src, "--out", tmp_path, "--overwrite") == 2
    assert "lies inside the output folder" in capsys.readouterr().err
