"""The studio's library: every generated avatar in its own folder with the avatar file (self-contained: triplane +
decoder), avatar.json (settings, hashes, timings), a thumbnail and the model input it was made from.

    library = Library(Path("~/.local/share/RodinHD/library").expanduser())
    entry = library.add(avatar, thumbnail=image, model_input=prepared.image)
    library.entries()   # newest first
    library.load(entry) # → Avatar

Qt-free, so it is tested without a display and the CLI could share it.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.avatar import RECORD_FILE, TRIPLANE_FILE, Avatar
from engine.errors import UserError
from engine.frames import to_uint8

THUMBNAIL_FILE = "thumbnail.png"
INPUT_FILE = "input.png"
TEMP_PREFIX = ".incoming-"


@dataclass(frozen=True)
class LibraryEntry:
    folder: Path
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def thumbnail(self) -> Path | None:
        path = self.folder / THUMBNAIL_FILE
        return path if path.is_file() else None

    @property
    def model_input(self) -> Path | None:
        path = self.folder / INPUT_FILE
        return path if path.is_file() else None

    def label(self) -> str:
        """Short caption under a thumbnail: the time it was made and its seed ("20:44 · seed 3")."""
        stamp = self.name.split("-")[1] if self.name.count("-") >= 2 else ""
        when = f"{stamp[:2]}:{stamp[2:4]} · " if len(stamp) == 6 and stamp.isdigit() else ""
        return f"{when}seed {self.record.get('seed', '?')}"

    def summary(self) -> str:
        """One line for tooltips and lists: mode, seed, guidance, steps."""
        r = self.record
        mode = "unconditional" if r.get("mode") == "unconditional" else f"guidance {r.get('guidance', '?')}"
        return f"seed {r.get('seed', '?')} · {mode} · {r.get('steps', '?')} steps · {r.get('stages', '?')}"


class Library:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def add(self, avatar: Avatar, thumbnail: np.ndarray | None = None, model_input: Image.Image | None = None,
            ) -> LibraryEntry:
        """Save `avatar` as a new entry. Written into a hidden folder first and renamed when complete, so a
        crash never leaves a half entry that the library would list."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = self._new_name(avatar)
        incoming = self.root / f"{TEMP_PREFIX}{name}"
        shutil.rmtree(incoming, ignore_errors=True)
        avatar.save(incoming)
        if thumbnail is not None:
            Image.fromarray(to_uint8(thumbnail, "white")).save(incoming / THUMBNAIL_FILE)
        if model_input is not None:
            model_input.save(incoming / INPUT_FILE)
        folder = self.root / name
        incoming.rename(folder)
        return LibraryEntry(folder, _read_record(folder) or {})

    def _new_name(self, avatar: Avatar) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-seed{avatar.metadata.get('seed', 0)}"
        name, n = base, 1
        while (self.root / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def entries(self) -> list[LibraryEntry]:
        """Complete entries, newest first; folders without an avatar file (or with a broken record) are skipped."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if folder.name.startswith(TEMP_PREFIX) or not (folder / TRIPLANE_FILE).is_file():
                continue
            record = _read_record(folder)
            if record is not None:
                found.append(LibraryEntry(folder, record))
        return sorted(found, key=lambda e: (e.folder.stat().st_mtime, e.name), reverse=True)

    def load(self, entry: LibraryEntry) -> Avatar:
        return Avatar.load(entry.folder)

    def remove(self, entry: LibraryEntry) -> None:
        if entry.folder.parent.resolve() != self.root.resolve():
            raise UserError(f"{entry.folder} is not in the library {self.root}")
        shutil.rmtree(entry.folder)


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
