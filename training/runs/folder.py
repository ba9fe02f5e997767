"""Run-folder helpers shared by writers and readers: what counts as a run, reading its config and status."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.io import read_json
from training.runs.status import read_status

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a launcher (the studio's training tab) writes into a run folder before the run itself starts: the command
# line and the process output. A new run may start in a folder that holds only these (and their temp files).
LAUNCHER_FILES = ("launch.json", "launch.log")


def file_handler(path: Path) -> logging.FileHandler:
    """A log.txt handler (INFO and up, timestamped lines)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds a run (its config.json or status.json exists)."""
    return (path / "config.json").is_file() or (path / "status.json").is_file()


def refuse_existing(path: Path) -> None:
    """UserError unless `path` is absent or an empty folder (a new run never overwrites anything)."""
    if path.is_file():
        raise UserError(f"{path} is a file, not a run folder")
    if is_run_dir(path):
        raise UserError(f"{path} already holds a run; resume it (--resume) or choose another run folder")
    if path.is_dir() and any(not is_launcher_file(p) for p in path.iterdir()):
        raise UserError(f"{path} exists and is not empty; choose a new run folder")


def is_launcher_file(path: Path) -> bool:
    """Whether `path` is one of LAUNCHER_FILES or an atomic-write temp file of one (`.launch.json.XXXX.tmp.json`)."""
    return path.name in LAUNCHER_FILES or any(path.name.startswith(f".{name}.") for name in LAUNCHER_FILES)


def read_run_config(path: Path, action: str) -> dict[str, Any]:
    """config.json as {"kind", "config"}; UserError (naming `action`) when missing or not a run config."""
    if not (path / "config.json").is_file():
        raise UserError(f"cannot {action} {path}: no run there (config.json not found)")
    try:
        stored = read_json(path / "config.json")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot {action} {path}: {exc}") from exc
    if not isinstance(stored, dict) or not isinstance(stored.get("kind"), str) or "config" not in stored:
        raise UserError(f"cannot {action} {path}: config.json is not a run config (needs 'kind' and 'config')")
    return stored


def read_status_or_empty(path: Path) -> dict[str, Any]:
    """status.json of the run at `path`, or {} when it is missing or damaged."""
    try:
        return read_status(path / "status.json")
    except (OSError, ValueError):
        return {}


COMMAND_FILE = "command.json"
_command: dict[str, Any] | None = None


def record_command(argv: list[str] | None, cwd: str | Path = ".") -> None:
    """Remember the `rodinhd` arguments of the command being run (None: none); a run it creates writes them to
    COMMAND_FILE, so the studio can resume runs started from a terminal (`rodinhd ARGV --resume` in `cwd`)."""
    global _command
    _command = None if argv is None else {"argv": [str(a) for a in argv], "cwd": str(cwd)}


def recorded_command() -> dict[str, Any] | None:
    return _command


def read_command(path: Path) -> dict[str, Any] | None:
    """COMMAND_FILE of the run at `path`: {"argv": [...], "cwd": ...}, or None when missing or damaged."""
    try:
        record = read_json(Path(path) / COMMAND_FILE)
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("argv"), list) and isinstance(record.get("cwd"), str)
    return record if ok else None
