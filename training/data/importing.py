"""`import_dataset`: turn NeRF-synthetic scenes or RodinHD avatar folders into our dataset format.

Each avatar is written into a hidden temporary folder inside `out`, then renamed to its final name, and
index.json is written last: an interrupted import never leaves anything that looks complete.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from engine.errors import UserError
from training.data import import_nerf, import_rodin
from training.data.format import INDEX_FILE, TEMP_PREFIX, write_index

KINDS = ("auto", "nerf", "rodin")



@dataclass(frozen=True)
class Importer:
    detect: Callable[[Path], bool]
    run: Callable[..., list[str]]  # run(src, dest, **options) -> warnings
    options: frozenset[str]


IMPORTERS = {
    "nerf": Importer(import_nerf.is_nerf_scene, import_nerf.import_nerf, import_nerf.OPTIONS),
    "rodin": Importer(import_rodin.is_rodin_avatar, import_rodin.import_rodin, import_rodin.OPTIONS),
}


@dataclass
class ImportResult:
    out: Path
    avatars: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # avatar id -> importer kind
    warnings: list[str] = field(default_factory=list)  # "avatar id: message"


def detect_kind(folder: Path) -> str | None:
    """'nerf', 'rodin' or None for a single scene/avatar folder."""
    return next((kind for kind, imp in IMPORTERS.items() if imp.detect(folder)), None)


def find_sources(src: Path, kind: str = "auto") -> list[tuple[Path, str]]:
    """[(folder, kind)]: `src` itself if it is one scene/avatar, else its sub-folders that are (sorted)."""
    if not src.is_dir():
        raise UserError(f"source folder {src} does not exist" if not src.exists() else f"{src} is not a folder")

    def kind_of(folder: Path) -> str | None:
        if kind == "auto":
            return detect_kind(folder)
        return kind if IMPORTERS[kind].detect(folder) else None

    if found := kind_of(src):
        return [(src, found)]
    subs = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    sources = [(p, k) for p in subs if (k := kind_of(p))]
    if not sources:
        what = {"auto": "NeRF-synthetic scene or RodinHD avatar", "nerf": "NeRF-synthetic scene",
                "rodin": "RodinHD avatar"}[kind]
        raise UserError(f"{src}: no {what} found there or in its sub-folders (NeRF: transforms.json or "
                        "transforms_train.json; RodinHD: metadata_000000.json + img_proc_fg_000000.png)")
    return sources


def _validate(options: dict[str, Any], kinds: set[str]) -> dict[str, Any]:
    """Drop unset (None) options; refuse bad values and options no importer in this run understands."""
    options = {k: v for k, v in options.items() if v is not None}
    for name in options:
        if not any(name in IMPORTERS[k].options for k in kinds):
            users = [k for k, imp in IMPORTERS.items() if name in imp.options] or ["no"]
            raise UserError(f"option {name!r} applies to {'/'.join(users)} imports only, not {'/'.join(sorted(kinds))}")
    scale = options.get("scale", 1.0)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise UserError(f"scale must be a positive number, got {scale!r}")
    if options.get("up", "y") not in ("y", "z"):
        raise UserError(f"up must be 'y' or 'z', got {options['up']!r}")
    for name in ("portrait_frame", "test_every"):
        if not (isinstance(options.get(name, 0), int) and options.get(name, 0) >= 0):
            raise UserError(f"{name} must be a whole number >= 0, got {options[name]!r}")
    return options


def _prepare_out(out: Path, src: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
        raise UserError(f"the source {src} lies inside the output folder {out}; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output folder {out} is not empty; pass --overwrite to replace avatars of the same name")
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).unlink(missing_ok=True)  # the dataset must not look complete while it changes


def avatar_ids(folders: list[Path]) -> list[str]:
    """Folder names made safe as avatar ids (letters, digits, . _ -), made unique with a _2, _3... suffix."""
    ids: list[str] = []
    for folder in folders:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", folder.resolve().name).lstrip(".") or "avatar"
        name, n = base, 1
        while name in ids:
            n += 1
            name = f"{base}_{n}"
        ids.append(name)
    return ids


def _import_one(src: Path, out: Path, avatar_id: str, run: Callable[..., list[str]], options: dict) -> list[str]:
    """Import into a temp folder inside `out`, then swap it in under `avatar_id`."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{avatar_id}-", dir=out))
    try:
        warnings = run(src, tmp, **options)
        final = out / avatar_id
        if final.exists():  # --overwrite: move the old one aside first so the swap is two renames
            old = out / f"{TEMP_PREFIX}old-{avatar_id}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        return warnings
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def import_dataset(src: Path, out: Path, kind: str = "auto", overwrite: bool = False,
                   **options: Any) -> ImportResult:
    """Import every scene/avatar found at `src` into the dataset folder `out`.

    options: scale, up, portrait_frame (NeRF); scale, test_every (RodinHD); None means the importer's default.
    Raises UserError for bad input (missing source, undecodable image, non-empty `out` without overwrite).
    """
    src, out = Path(src), Path(out)
    if kind not in KINDS:
        raise UserError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    sources = find_sources(src, kind)
    kinds = {k for _, k in sources}
    options = _validate(options, kinds)
    _prepare_out(out, src, overwrite)
    result = ImportResult(out)
    ids = avatar_ids([folder for folder, _ in sources])
    for (folder, k), avatar_id in tqdm(list(zip(sources, ids)), desc="import", unit="avatar"):
        imp = IMPORTERS[k]
        own = {name: value for name, value in options.items() if name in imp.options}
        result.warnings += [f"{avatar_id}: {w}" for w in _import_one(folder, out, avatar_id, imp.run, own)]
        result.avatars.append(avatar_id)
        result.kinds[avatar_id] = k
    importer = kinds.pop() if len(kinds) == 1 else "mixed"
    write_index(out, result.avatars, {"importer": importer, "from": str(src.resolve())})
    return result
