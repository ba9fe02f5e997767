"""Tiny source datasets for the `rodinhd data` tests (imported by test_data_*.py; not a test module).

- `make_blender_scene`: NeRF-synthetic Blender style (transforms_{train,val,test}.json, ./train/r_0 paths, Z-up).
- `make_ngp_scene`: instant-ngp style (one transforms.json, fl_x + w, RGB JPGs, aabb_scale).
- `make_rodin_avatar`: the authors' RodinHD layout (img_proc_fg_%06d.png + metadata_%06d.json, Blender Z-up).
All images are SIZE×SIZE, drawn with numpy from a fixed seed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from engine.cameras import look_at

SIZE = 32
Z_UP = np.array([0.0, 0.0, 1.0])
BLENDER_EYES = [(0.0, -4.0, 0.0), (4.0, 0.0, 0.0), (0.0, 4.0, 1.0), (-4.0, 0.0, -1.0), (3.0, -3.0, 2.0)]


def disc_rgba(seed: int, size: int = SIZE) -> np.ndarray:
    """[size, size, 4] uint8: a randomly coloured noisy disc, alpha 255 inside and 0 outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    inside = (xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2 < (0.35 * size) ** 2
    rgb = np.clip(rng.integers(40, 216, 3) + rng.integers(-30, 30, (size, size, 3)), 0, 255)
    return np.dstack([rgb * inside[..., None], inside * 255]).astype(np.uint8)


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def blender_c2w(eye) -> np.ndarray:
    """A Blender (Z-up world) camera at `eye` looking at the origin, OpenGL camera axes."""
    return look_at(np.array(eye, dtype=float), np.zeros(3), Z_UP)


def _write_split(folder: Path, split: str, eyes: list, seed: int, fov: float) -> None:
    frames = []
    for i, eye in enumerate(eyes):
        save(disc_rgba(seed + i), folder / split / f"r_{i}.png")
        frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0,
                       "transform_matrix": blender_c2w(eye).tolist()})
    (folder / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))


def make_blender_scene(folder: Path, n_train: int = 3, n_test: int = 2, n_val: int = 1, seed: int = 0,
                       fov: float = 0.6911112070083618) -> Path:
    """A Blender-style NeRF-synthetic scene; train camera i sits at BLENDER_EYES[i] (world Z-up)."""
    _write_split(folder, "train", BLENDER_EYES[:n_train], seed, fov)
    if n_val:
        _write_split(folder, "val", BLENDER_EYES[1:1 + n_val], seed + 100, fov)
    if n_test:
        _write_split(folder, "test", BLENDER_EYES[-n_test:], seed + 200, fov)
    return folder


def make_ngp_scene(folder: Path, n: int = 3, seed: int = 10, fl_x: float = 40.0) -> Path:
    """An instant-ngp scene: transforms.json with fl_x/w/h and aabb_scale; RGB JPG images."""
    frames = []
    for i in range(n):
        rgb = disc_rgba(seed + i)[..., :3]
        save(rgb, folder / "images" / f"{i:03d}.jpg", quality=95)
        frames.append({"file_path": f"images/{i:03d}.jpg", "transform_matrix": blender_c2w(BLENDER_EYES[i]).tolist()})
    meta = {"fl_x": fl_x, "fl_y": fl_x, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE, "h": SIZE, "aabb_scale": 4,
            "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(meta))
    return folder


def make_rodin_avatar(folder: Path, n: int = 4, seed: int = 20, radius: float = 46.0,
                      focal_length: float = 50.0, sensor_width: float = 36.0) -> Path:
    """A RodinHD avatar folder; view 0 is frontal (Blender -Y), the others orbit at `radius` (Blender units)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        az = 2 * np.pi * i / n
        eye = radius * np.array([np.sin(az), -np.cos(az), 0.1 * i])
        save(disc_rgba(seed + i), folder / f"img_proc_fg_{i:06d}.png")
        camera = {"resolution": [SIZE, SIZE], "focal_length": focal_length, "sensor_width": sensor_width,
                  "transformation": blender_c2w(eye).tolist()}
        (folder / f"metadata_{i:06d}.json").write_text(json.dumps({"cameras": [camera]}))
    return folder


def rodinhd(monkeypatch, *argv: str) -> int:
    """Run the `rodinhd` CLI in-process with only the `data` verb registered (other verbs are not under test)."""
    from training.cli import main as cli_main

    monkeypatch.setattr(cli_main, "VERB_MODULES", ["training.cli.data_cmd"])
    return cli_main.main([str(a) for a in argv])
