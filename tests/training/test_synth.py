"""`rodinhd synth` end to end (in-process CLI, tiny sizes): the dataset layout, byte-identical determinism,
user errors, --resume, --overwrite, and interrupted writes."""
from __future__ import annotations

import json
import math
import os
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.cli.main import main
from training.data.check import check_dataset
from training.data.format import TEMP_PREFIX
from training.synth import writer
from training.synth.config import SynthConfig

TINY = ["--count", "2", "--views", "4", "--test-views", "2", "--resolution", "64"]
AVATARS = ["avatar_00000", "avatar_00001"]
AVATAR_FILES = {"transforms.json", "transforms_test.json", "portrait.png", "attributes.json", "caption.txt",
                "images/0000.png", "images/0001.png", "images/0002.png", "images/0003.png",
                "test/0000.png", "test/0001.png"}


def synth(out: Path, *args: str) -> int:
    return main(["synth", "--out", str(out), *args])


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below `root` (recursively), by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(root: Path) -> dict[str, bytes]:
    return files_under(root) if root.is_dir() else {}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """The reference run: 2 avatars, 4 + 2 views at 64², seed 0. Tests must not modify it (copy it first)."""
    out = tmp_path_factory.mktemp("synth") / "data"
    assert synth(out, *TINY) == 0
    return out


def copy_of(dataset: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(dataset, target)
    return target


# ---- a complete dataset ----

def test_writes_every_file_of_the_layout(dataset):
    assert {p.name for p in dataset.iterdir()} == {"index.json", "synth_config.json", *AVATARS}
    index = json.loads((dataset / "index.json").read_text())
    assert index["format"] == "rodinhd-dataset" and index["version"] == 1
    assert index["avatars"] == AVATARS
    assert SynthConfig.load(dataset / "synth_config.json") == SynthConfig.preset(
        "tiny", count=2, views=4, test_views=2, resolution=64)
    for name in AVATARS:
        assert set(files_under(dataset / name)) == AVATAR_FILES, name


def test_transforms_and_images(dataset):
    for name in AVATARS:
        folder = dataset / name
        for transforms, count, sub in (("transforms.json", 4, "images"), ("transforms_test.json", 2, "test")):
            data = json.loads((folder / transforms).read_text())
            assert data["camera_angle_x"] == pytest.approx(math.radians(40.0))
            assert [f["file_path"] for f in data["frames"]] == [f"{sub}/{i:04d}.png" for i in range(count)]
            for frame in data["frames"]:
                with Image.open(folder / frame["file_path"]) as img:
                    assert (img.format, img.mode, img.size) == ("PNG", "RGBA", (64, 64))
                    alpha = np.asarray(img)[..., 3]
                assert 0 < (alpha > 0).mean() < 0.9  # something drawn, on a transparent background
        assert (folder / "portrait.png").read_bytes() == (folder / "images/0000.png").read_bytes()


def test_frame_zero_is_the_frontal_camera(dataset):
    config = SynthConfig.preset("tiny")
    for name in AVATARS:
        c2w = np.array(json.loads((dataset / name / "transforms.json").read_text())["frames"][0]["transform_matrix"])
        expected = np.eye(4)
        expected[:3, 3] = [0.0, config.target_y, config.radius]  # on the +Z axis (at the target's height)
        np.testing.assert_allclose(c2w, expected, atol=1e-7)  # identity rotation: looking down -Z, +Y up
        others = json.loads((dataset / name / "transforms_test.json").read_text())["frames"]
        assert all(not np.allclose(f["transform_matrix"], c2w, atol=1e-3) for f in others)


def test_caption_and_attributes(dataset):
    seeds = set()
    for i, name in enumerate(AVATARS):
        caption = (dataset / name / "caption.txt").read_text()
        attributes = json.loads((dataset / name / "attributes.json").read_text())
        assert caption.strip() and caption.endswith("\n") and caption.count("\n") == 1
        assert attributes["caption"] == caption.strip()
        assert attributes["id"] == name and attributes["index"] == i
        assert attributes["seed"] == writer.avatar_seed(0, i)
        assert {"presentation", "face", "hair", "clothing", "accessories"} <= set(attributes)
        seeds.add(attributes["seed"])
    assert len(seeds) == len(AVATARS)


def test_check_dataset_finds_no_problems(dataset):
    assert [str(p) for p in check_dataset(dataset, full=True)] == []


def test_zero_test_views_writes_no_held_out_split(tmp_path):
    out = tmp_path / "data"
    assert synth(out, "--count", "1", "--views", "2", "--test-views", "0", "--resolution", "32") == 0
    assert set(files_under(out / AVATARS[0])) == {"transforms.json", "portrait.png", "attributes.json",
                                                  "caption.txt", "images/0000.png", "images/0001.png"}
    assert check_dataset(out) == []


# ---- determinism ----

def test_same_seed_gives_byte_identical_files(dataset, tmp_path):
    again = tmp_path / "again"
    assert synth(again, *TINY) == 0
    assert files_under(again) == files_under(dataset)  # every avatar file, index.json and synth_config.json


def test_different_seed_gives_different_avatars(dataset, tmp_path):
    other = tmp_path / "other"
    assert synth(other, *TINY, "--seed", "1") == 0
    for name in AVATARS:
        assert (other / name / "portrait.png").read_bytes() != (dataset / name / "portrait.png").read_bytes()
        assert (other / name / "attributes.json").read_bytes() != (dataset / name / "attributes.json").read_bytes()


def test_avatars_do_not_depend_on_count(dataset, tmp_path):
    one = tmp_path / "one"
    assert synth(one, "--count", "1", *TINY[2:]) == 0
    assert files_under(one / AVATARS[0]) == files_under(dataset / AVATARS[0])


def test_workers_do_not_change_the_output(dataset, tmp_path, monkeypatch):
    pools = []
    real = writer.spawn_pool
    monkeypatch.setattr(writer, "spawn_pool", lambda workers, *args: pools.append(workers) or real(workers, *args))
    parallel = tmp_path / "parallel"
    assert synth(parallel, *TINY, "--workers", "2") == 0
    assert pools == [2]  # the avatars really were rendered by worker processes
    got, want = files_under(parallel), files_under(dataset)
    assert {k: v for k, v in got.items() if k != "synth_config.json"} == \
           {k: v for k, v in want.items() if k != "synth_config.json"}
    assert SynthConfig.load(parallel / "synth_config.json").workers == 2


# ---- user errors: exit 2, one line on stderr, nothing written ----

@pytest.mark.parametrize("args, fragment", [
    (["--count", "0"], "count"),
    (["--resolution", "7"], "resolution"),
    (["--resolution", "2048"], "resolution"),
    (["--views", "-3"], "views"),
    (["--workers", "0"], "workers"),
])
def test_invalid_values_exit_2_with_one_line(tmp_path, capsys, args, fragment):
    out = tmp_path / "data"
    assert synth(out, *TINY, *args) == 2  # later options override TINY's
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rodinhd synth: error:"), err
    assert fragment in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, fragment", [
    (["--count", "abc"], "expected a whole number, got 'abc'"),
    (["--resolution", "64.5"], "expected a whole number"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--overwrite", "--resume"], "not allowed with argument"),
])
def test_argparse_errors_exit_2(tmp_path, capsys, args, fragment):
    out = tmp_path / "data"
    with pytest.raises(SystemExit) as info:
        synth(out, *TINY, *args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err.strip().splitlines()[-1], err
    assert list(tmp_path.iterdir()) == []


def test_missing_out_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["synth", *TINY])
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err


def _expect_user_error(capsys, out: Path, fragment: str, *args: str) -> str:
    assert synth(out, *TINY, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rodinhd synth: error:") and fragment in err, err
    return err


def test_non_empty_out_needs_overwrite_or_resume(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err = _expect_user_error(capsys, out, "not empty")
    assert "--overwrite" in err and "--resume" in err
    assert snapshot(out) == {"notes.txt": b"mine"}


def test_out_is_an_existing_file(tmp_path, capsys):
    out = tmp_path / "data"
    out.write_text("a file")
    _expect_user_error(capsys, out, "not a folder")
    assert out.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_out_under_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _expect_user_error(capsys, blocker / "sub", "cannot write")
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions (see test_out_under_a_regular_file)")
def test_out_under_a_read_only_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _expect_user_error(capsys, locked / "data", "cannot write")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# ---- --resume and --overwrite ----

def test_resume_regenerates_missing_avatars_only(dataset, tmp_path, capsys):
    out = copy_of(dataset, tmp_path)
    kept = out / AVATARS[0] / "portrait.png"
    kept_mtime = kept.stat().st_mtime_ns
    shutil.rmtree(out / AVATARS[1])
    partial = out / f"{TEMP_PREFIX}{AVATARS[1]}-4242"
    (partial / "images").mkdir(parents=True)
    (partial / "images" / "0000.png").write_bytes(b"half")
    (out / "index.json").unlink()
    assert synth(out, *TINY, "--resume") == 0
    assert "1 avatar(s) already complete, 1 to generate" in capsys.readouterr().out
    assert files_under(out) == files_under(dataset)  # the missing avatar is back, byte for byte
    assert not partial.exists() and not list(out.glob(f"{TEMP_PREFIX}*"))
    assert kept.stat().st_mtime_ns == kept_mtime  # the complete avatar was not rendered again
    assert json.loads((out / "index.json").read_text())["avatars"] == AVATARS


def test_resume_of_a_complete_dataset_renders_nothing(dataset, tmp_path, capsys):
    out = copy_of(dataset, tmp_path)
    assert synth(out, *TINY, "--resume") == 0
    assert "2 avatar(s) already complete, 0 to generate" in capsys.readouterr().out
    assert files_under(out) == files_under(dataset)


def test_resume_with_more_avatars_adds_them(dataset, tmp_path):
    out = copy_of(dataset, tmp_path)
    assert synth(out, *TINY, "--count", "3", "--resume") == 0
    assert json.loads((out / "index.json").read_text())["avatars"] == [*AVATARS, "avatar_00002"]
    for name in AVATARS:
        assert files_under(out / name) == files_under(dataset / name)


@pytest.mark.parametrize("args, field", [(["--resolution", "32"], "resolution"), (["--seed", "5"], "seed"),
                                         (["--views", "3"], "views")])
def test_resume_with_different_options_is_refused(dataset, tmp_path, capsys, args, field):
    out = copy_of(dataset, tmp_path)
    shutil.rmtree(out / AVATARS[1])
    before = files_under(out)
    err = _expect_user_error(capsys, out, "cannot resume", *args, "--resume")
    assert field in err
    assert files_under(out) == before  # config, index and avatars untouched


def test_overwrite_replaces_the_dataset_and_keeps_unrelated_files(dataset, tmp_path):
    out = copy_of(dataset, tmp_path)
    (out / "notes.txt").write_text("keep me")
    (out / f"{TEMP_PREFIX}avatar_00007-1").mkdir()
    assert synth(out, "--count", "1", *TINY[2:], "--overwrite") == 0
    assert {p.name for p in out.iterdir()} == {"index.json", "synth_config.json", AVATARS[0], "notes.txt"}
    assert json.loads((out / "index.json").read_text())["avatars"] == [AVATARS[0]]
    assert SynthConfig.load(out / "synth_config.json").count == 1
    assert (out / "notes.txt").read_text() == "keep me"
    assert files_under(out / AVATARS[0]) == files_under(dataset / AVATARS[0])
    assert check_dataset(out) == []


# ---- interrupted writes ----

@pytest.fixture(scope="module")
def renderer():
    from training.synth.gl_renderer import SceneRenderer

    r = SceneRenderer(64, 2)
    yield r
    r.release()


CONFIG = SynthConfig(count=1, views=4, test_views=2, resolution=64)


def _fail_png_after(monkeypatch, calls: int, exc: BaseException) -> None:
    real = writer.png_bytes
    done = []

    def flaky(rgba):
        if len(done) >= calls:
            raise exc
        done.append(1)
        return real(rgba)

    monkeypatch.setattr(writer, "png_bytes", flaky)


@pytest.mark.parametrize("calls, exc", [(0, OSError("disk full")), (3, OSError("disk full")),
                                        (5, KeyboardInterrupt())])
def test_interrupted_avatar_leaves_nothing_that_looks_complete(tmp_path, monkeypatch, renderer, calls, exc):
    _fail_png_after(monkeypatch, calls, exc)
    with pytest.raises(type(exc)):
        writer.write_avatar(renderer, CONFIG, 0, tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither avatar_00000 nor a .partial- folder


def test_failure_in_the_last_step_leaves_nothing(tmp_path, monkeypatch, renderer):
    def broken(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(writer, "atomic_write_text", broken)  # caption.txt is written last
    with pytest.raises(OSError):
        writer.write_avatar(renderer, CONFIG, 0, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rewrite_keeps_the_earlier_complete_avatar(tmp_path, monkeypatch, renderer):
    assert writer.write_avatar(renderer, CONFIG, 0, tmp_path) == 6
    before = files_under(tmp_path)
    assert set(before) == {f"avatar_00000/{f}" for f in AVATAR_FILES}
    _fail_png_after(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        writer.write_avatar(renderer, CONFIG, 0, tmp_path)
    assert files_under(tmp_path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["avatar_00000"]


# ---- --version and --help ----

def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"rodinhd {version('rodinhd-studio')}"


def test_synth_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["synth", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--count", "--views", "--test-views", "--resolution", "--seed", "--workers",
                   "--overwrite", "--resume", "--preset"):
        assert option in text, option
    assert "tiny" in text and "paper" in text
