"""Write synthetic avatars to disk: one folder per avatar, written under a temporary name and renamed when
complete, so an interrupted run never leaves a half-written avatar that looks finished."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from engine.errors import UserError
from engine.io import atomic_write_json, atomic_write_text
from training.data.format import (
    ATTRIBUTES_FILE, CAPTION_FILE, INDEX_FILE, PORTRAIT_FILE, TEMP_PREFIX, TEST_DIR, TEST_TRANSFORMS, TRAIN_DIR,
    TRAIN_TRANSFORMS,
    ViewSet, write_index, write_transforms,
)
from training.synth.attributes import sample_attributes
from training.synth.caption import describe
from training.synth.cameras import view_set
from training.synth.config import SynthConfig
from training.worker_pool import spawn_pool

CONFIG_FILE = "synth_config.json"
PNG_COMPRESS_LEVEL = 4  # deterministic bytes; 6 (default) is ~2× slower to encode for ~5 % smaller files


def avatar_id(index: int) -> str:
    return f"avatar_{index:05d}"


def avatar_seed(dataset_seed: int, index: int) -> int:
    """Per-avatar seed derived from (dataset seed, index): avatars do not depend on count or worker split."""
    return int(np.random.SeedSequence([dataset_seed, index]).generate_state(1)[0])


def png_bytes(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _render_split(renderer, views: ViewSet, folder: Path) -> bytes | None:
    """Render and write every view of a split; returns the PNG of view 0 (the portrait for training)."""
    first = None
    for i, frame in enumerate(views.frames):
        data = png_bytes(renderer.render(frame.c2w, views.camera_angle_x))
        (folder / frame.file_path).write_bytes(data)
        first = data if i == 0 else first
    return first


def write_avatar(renderer, config: SynthConfig, index: int, out: Path) -> int:
    """Generate avatar `index` into `out/<id>`; returns the number of images rendered."""
    from training.synth.scene import build_scene  # heavy imports stay out of the parent process

    attributes = sample_attributes(avatar_seed(config.seed, index))
    final = out / avatar_id(index)
    tmp = out / f"{TEMP_PREFIX}{avatar_id(index)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / TRAIN_DIR).mkdir(parents=True)
        renderer.load(build_scene(attributes))
        train, test = view_set(config, "train"), view_set(config, "test")
        (tmp / PORTRAIT_FILE).write_bytes(_render_split(renderer, train, tmp))
        write_transforms(tmp / TRAIN_TRANSFORMS, train)
        if test.frames:  # no held-out split at all when --test-views 0
            (tmp / TEST_DIR).mkdir()
            _render_split(renderer, test, tmp)
            write_transforms(tmp / TEST_TRANSFORMS, test)
        caption = describe(attributes)
        atomic_write_json(tmp / ATTRIBUTES_FILE, {"id": avatar_id(index), "index": index, "caption": caption,
                                                  **attributes.to_dict()})
        atomic_write_text(tmp / CAPTION_FILE, caption + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(train.frames) + len(test.frames)


# ---- worker processes: each owns one GL context and renderer ----
_WORKER = {}


def _init_worker(config_dict: dict) -> None:
    from training.synth.gl_renderer import SceneRenderer

    config = SynthConfig.from_dict(config_dict)
    _WORKER["config"] = config
    _WORKER["renderer"] = SceneRenderer(config.resolution, config.supersample)


def _work(job: tuple[int, str]) -> tuple[int, int]:
    index, out = job
    return index, write_avatar(_WORKER["renderer"], _WORKER["config"], index, Path(out))


def generate(config: SynthConfig, out: Path, todo: list[int]) -> Iterator[tuple[int, int]]:
    """Yield (avatar index, images written) as avatars complete (any order with workers > 1)."""
    if config.workers == 1 or len(todo) <= 1:
        _init_worker(config.to_dict())
        for index in todo:
            yield _work((index, str(out)))
        return
    with spawn_pool(min(config.workers, len(todo)), _init_worker, (config.to_dict(),)) as pool:
        yield from pool.imap_unordered(_work, [(i, str(out)) for i in todo])


def prepare_output(config: SynthConfig, out: Path, overwrite: bool, resume: bool) -> list[int]:
    """Check the output folder and return the avatar indices still to generate."""
    if overwrite and resume:
        raise UserError("--overwrite and --resume exclude each other")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    existing = [p for p in out.iterdir()] if out.is_dir() else []
    if existing and not (overwrite or resume):
        raise UserError(f"{out} is not empty; use --overwrite to replace it or --resume to finish an earlier run")
    _ensure_writable(out)
    if overwrite:
        _remove_dataset_files(out)
    for leftover in out.glob(f"{TEMP_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if resume and (out / CONFIG_FILE).exists():
        earlier = SynthConfig.load(out / CONFIG_FILE)
        if earlier.output_key() != config.output_key():
            changed = sorted(k for k, v in config.output_key().items() if earlier.output_key().get(k) != v)
            raise UserError(f"cannot resume: {out} was generated with different options ({', '.join(changed)})")
    config.save(out / CONFIG_FILE)
    return [i for i in config.indices() if not (out / avatar_id(i)).is_dir()]


def _ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f"{TEMP_PREFIX}probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}") from exc


def _remove_dataset_files(out: Path) -> None:
    """--overwrite removes what a dataset consists of and leaves unrelated files alone."""
    for path in out.iterdir():
        if path.is_dir() and (path.name.startswith("avatar_") or path.name.startswith(TEMP_PREFIX)):
            shutil.rmtree(path)
        elif path.name in (INDEX_FILE, CONFIG_FILE):
            path.unlink()


def finish_index(config: SynthConfig, out: Path) -> None:
    ids = [avatar_id(i) for i in config.indices() if (out / avatar_id(i)).is_dir()]
    write_index(out, ids, {"generator": "rodinhd synth", "config": CONFIG_FILE})
