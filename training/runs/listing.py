"""`list_runs(root)`: read-only summaries of the runs under a folder (used by `rodinhd runs` and the studio)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.errors import UserError
from engine.io import read_json
from training.runs.folder import is_run_dir, read_status_or_empty
from training.runs.metrics import last_metrics
from training.runs.status import effective_state


@dataclass
class RunSummary:
    """What a run listing shows; `state` already accounts for runs whose process died."""
    name: str                      # path relative to the listed root, e.g. "fit/avatar_00000"
    path: Path
    kind: str | None
    state: str                     # running | finished | failed | stopped | unknown
    reason: str | None
    progress: dict[str, Any] = field(default_factory=lambda: {"step": 0, "total": None})
    started: str | None = None
    updated: str | None = None
    metrics: dict[str, Any] | None = None   # the last complete line of metrics.jsonl


def find_run_dirs(root: Path, is_run: Callable[[Path], bool] = is_run_dir) -> list[Path]:
    """`root` itself if it is a run, else its run subfolders, looking one level further into non-run folders.
    `is_run` decides what a run folder is (default: one with a run's config or status)."""
    root = Path(root)
    if is_run(root):
        return [root]
    found = []
    for child in subdirs(root):
        if is_run(child):
            found.append(child)
        else:
            found += [grandchild for grandchild in subdirs(child) if is_run(grandchild)]
    return found


def summarize_run(path: Path, root: Path | None = None) -> RunSummary:
    """The summary of one run folder; never writes to it and never raises on damaged files."""
    path = Path(path)
    status = read_status_or_empty(path)
    state, reason = effective_state(status) if status else ("unknown", "status.json missing or unreadable")
    name = path.relative_to(root).as_posix() if root is not None and path != root else path.name
    return RunSummary(
        name=name, path=path, kind=status.get("kind") or config_kind(path), state=state, reason=reason,
        progress=_progress(status.get("progress")), started=status.get("started"), updated=status.get("updated"),
        metrics=last_metrics(path / "metrics.jsonl"),
    )


def list_runs(root: str | Path) -> list[RunSummary]:
    """Summaries of every run in `root` (and one level below), oldest first; a missing root is a UserError."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no runs folder at {root}" if not root.exists() else f"{root} is not a folder")
    summaries = [summarize_run(path, root) for path in find_run_dirs(root)]
    return sorted(summaries, key=lambda s: (s.started or "", s.name))


def subdirs(folder: Path) -> list[Path]:
    """The visible sub-folders of `folder`, sorted; none when it cannot be read."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def config_kind(path: Path) -> str | None:
    """The `kind` recorded in the run folder's config.json; None when missing, damaged or not a string."""
    try:
        kind = read_json(path / "config.json").get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _progress(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {"step": 0, "total": None}
    return {"step": value.get("step", 0), "total": value.get("total")}
