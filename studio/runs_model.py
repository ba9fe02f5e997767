"""What the training tab lists: one row per run under the runs folder, rebuilt every poll from files that changed.
Qt-free.

A row merges the run's own files (status.json, metrics.jsonl, written by `training.runs.Run`) with the studio's
launch record (launch.json + launch.log, written by `studio.run_processes`). Kinds without a run folder (synth,
text, lora) have only the launch record: their state comes from the process, its exit code and a done marker.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studio.launch_command import CLI_MODULE, resume_argv
from studio.run_kinds import KIND_BY_RUN_KIND, KINDS, kind_label
from studio.run_processes import LAUNCH_FILE, OUTPUT_FILE, read_launch
from training.runs import pid_alive
from training.runs.folder import is_run_dir, read_command, read_status_or_empty
from training.runs.listing import config_kind, find_run_dirs, subdirs
from training.runs.metrics import last_metrics
from training.runs.status import effective_state, hostname

ACTIVE = ("running", "starting")
METRIC_FILES = ("metrics.jsonl",)  # a Run's (every kind with a run folder, `train --stage text` too)
SUMMARY_KEYS = ("loss", "psnr", "eval_psnr_mean", "test_psnr", "train_psnr", "final_psnr", "lr")


@dataclass
class RunRow:
    path: Path
    name: str
    kind: str | None                 # the studio's kind key (fit1, base, …) when known
    kind_label: str
    state: str                       # starting | running | finished | failed | stopped | unknown
    reason: str | None = None
    step: int | None = None
    total: int | None = None
    started: str | None = None
    metrics: dict[str, Any] | None = None
    launch: dict[str, Any] | None = None
    pid: int | None = None           # the process Stop signals
    resume: list[str] | None = None  # the command Resume runs
    resume_block: str = ""           # why Resume is not offered
    resume_cwd: Path | None = None   # where Resume runs (a CLI-started run's command.json)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def metrics_text(self) -> str:
        """`loss 0.0123 · psnr 21.40` from the newest metrics line."""
        values = self.metrics or {}
        keys = [k for k in SUMMARY_KEYS if _number(values.get(k)) is not None]
        if not keys:
            keys = [k for k, v in values.items() if k not in ("step", "time") and _number(v) is not None][:2]
        return " · ".join(f"{k} {_format(values[k])}" for k in keys[:3])


class FileCache:
    """Parse a file again only when its (mtime, size) changed: polling stays cheap with many runs."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Path, str], tuple[tuple[int, int] | None, Any]] = {}

    def get(self, path: Path, loader: Callable[[Path], Any], tag: str = "") -> Any:
        key = (path, tag)
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        cached = self._entries.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        value = loader(path) if stamp is not None else None
        self._entries[key] = (stamp, value)
        return value

    def forget(self, keep: set[Path]) -> None:
        self._entries = {k: v for k, v in self._entries.items() if k[0].parent in keep}


def run_folders(root: Path) -> list[Path]:
    """Runs in `root` and one level below: folders with a run's config/status or a studio launch record.
    `root` itself is never one of them (it is the folder of runs the studio watches)."""
    root = Path(root)
    return find_run_dirs(root, lambda path: path != root and (is_run_dir(path) or (path / LAUNCH_FILE).is_file()))


class RunsWatcher:
    """`rows()` lists the runs under `root`; only files whose mtime changed since the last call are re-read."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cache = FileCache()

    def rows(self) -> list[RunRow]:
        folders = run_folders(self.root) if self.root.is_dir() else []
        self.cache.forget(set(folders))
        rows = [self.row(folder) for folder in folders]
        return sorted(rows, key=lambda r: (r.started or "", r.name))

    def row(self, folder: Path) -> RunRow:
        status = self.cache.get(folder / "status.json", lambda p: read_status_or_empty(p.parent)) or {}
        launch = self.cache.get(folder / LAUNCH_FILE, lambda p: read_launch(p.parent))
        recorded_kind = self.cache.get(folder / "config.json", lambda p: config_kind(p.parent))
        metrics_file = next((folder / n for n in METRIC_FILES if (folder / n).is_file()), None)
        metrics = self.cache.get(metrics_file, last_metrics) if metrics_file else None
        run_kind = status.get("kind") or recorded_kind
        kind = KIND_BY_RUN_KIND.get(run_kind) if run_kind else (launch or {}).get("kind")
        row = RunRow(path=folder, name=_relative(folder, self.root), kind=kind,
                     kind_label=kind_label(kind or run_kind), state="unknown", launch=launch, metrics=metrics,
                     started=status.get("started") or (launch or {}).get("created"))
        if status:
            _state_from_status(row, status, folder)
        elif launch is not None:
            _state_from_launch(row, folder)
        else:
            row.reason = "status.json missing or unreadable"
        _progress(row, status, folder)
        _resume(row)
        return row


# ------------------------------------------------------------------------------------------------------ state
def _state_from_status(row: RunRow, status: dict[str, Any], folder: Path) -> None:
    row.state, row.reason = effective_state(status)
    same_host = status.get("host") == hostname()
    if row.state == "running" and same_host:
        row.pid = status.get("pid")
    launch = row.launch
    if launch is None or not launch.get("pid"):
        return
    launched_pid = launch["pid"]
    # once its exit code is recorded the launched process is gone: a live process with that pid is another one
    alive = launch.get("exit_code") is None and pid_alive(launched_pid)
    if alive:
        row.pid = launched_pid  # torchrun: signal the launcher (it passes the signal to every rank)
        row.extra["process_alive"] = True
    stale = _mtime(folder / "status.json") < float(launch.get("launched") or 0)
    if not stale:
        return
    # status.json predates the latest launch: the new process has not reached Run.create yet, or died first
    if alive:
        row.state, row.reason = "starting", "the process is starting"
    else:
        _state_from_launch(row, folder)


def _state_from_launch(row: RunRow, folder: Path) -> None:
    """A launch without a (fresh) status.json: the process decides, else its exit code, else a done marker."""
    launch = row.launch or {}
    pid, spec = launch.get("pid"), KINDS.get(launch.get("kind", ""))
    if pid and launch.get("exit_code") is None and pid_alive(pid):  # an exit code: that pid may be reused
        row.pid = pid
        row.state = "running" if spec is not None and spec.done_marker else "starting"
        row.reason = None
        return
    code = launch.get("exit_code")
    done = spec is not None and spec.done_marker and (folder / spec.done_marker).exists()
    if code == 0 and (spec is None or not spec.done_marker or done):
        row.state, row.reason = "finished", None
    elif launch.get("stop_requested"):
        row.state, row.reason = "stopped", "stopped from the studio"
    elif code is None and done:
        row.state, row.reason = "finished", None
    elif not pid:
        row.state, row.reason = "failed", "the process did not start"
    else:
        row.state = "failed"
        last = last_output_line(folder / OUTPUT_FILE)
        exit_text = f"exit code {code}" if code is not None else "process ended"
        row.reason = f"{last} ({exit_text})" if last else exit_text


def _progress(row: RunRow, status: dict[str, Any], folder: Path) -> None:
    progress = status.get("progress") if isinstance(status.get("progress"), dict) else None
    if progress:
        row.step, row.total = progress.get("step"), progress.get("total")
        return
    launch = row.launch or {}
    row.total = launch.get("total")
    if launch.get("kind") == "synth":
        row.step = sum(1 for p in subdirs(folder) if p.name.startswith("avatar_"))
    elif row.metrics and isinstance(row.metrics.get("step"), int):
        row.step = row.metrics["step"]
    if row.state == "finished" and row.total:
        row.step = row.total


def _resume(row: RunRow) -> None:
    spec = KINDS.get(row.kind or "")
    if row.active:
        row.resume_block = "it is running"
    elif row.extra.get("process_alive"):
        row.resume_block = "its process is still exiting"
    elif row.state == "finished":
        row.resume_block = "it has finished"
    elif spec is not None and not spec.resumable:
        row.resume_block = f"`rodinhd train --stage {spec.key}` cannot resume; start a new run"
    elif row.launch is None:
        command = read_command(row.path)  # written by the rodinhd CLI when it created the run
        if command is None:
            row.resume_block = ("it was started outside the studio by a version that did not record its command "
                                "line; resume it in a terminal with the same command plus --resume")
        else:
            row.resume = [sys.executable, "-m", CLI_MODULE, *resume_argv(command["argv"])]
            row.resume_cwd = Path(command["cwd"])
    elif spec is not None and spec.run_kinds and not (row.path / "config.json").is_file():
        # stopped or failed before the run existed (e.g. while importing): start it afresh, not --resume
        row.resume = [arg for arg in row.launch["argv"] if arg != "--resume"]
    else:
        row.resume = resume_argv(row.launch["argv"])


# ------------------------------------------------------------------------------------------------------ files
def last_output_line(path: Path) -> str:
    """The last meaningful line of a process output (an error message; tqdm bars and tracebacks' frames skipped)."""
    for line in reversed(tail_lines(path, 200)):
        text = line.strip()
        if text and not text.startswith(("File ", "^", "[")) and "it/s]" not in text and "%|" not in text:
            return text if len(text) <= 300 else text[:297] + "..."
    return ""


def tail_lines(path: Path, max_lines: int = 500, max_bytes: int = 256 * 1024) -> list[str]:
    """The last `max_lines` lines of a text file, reading at most its last `max_bytes`; a carriage return
    (a progress bar redrawn in place) keeps only what was drawn last."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").split("\n")
    if size > max_bytes:
        lines = lines[1:]  # the first one is cut
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines][-max_lines:]


def newest_images(folder: Path, limit: int = 6) -> list[Path]:
    """The newest PNG/JPEG files in `folder` (and its sub-folders), newest first."""
    try:
        found = [p for p in Path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")
                 and not p.name.startswith(".") and p.is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (_mtime(p), p.name), reverse=True)[:limit]


def _relative(folder: Path, root: Path) -> str:
    try:
        return folder.relative_to(root).as_posix()
    except ValueError:
        return folder.name


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _format(value: Any) -> str:
    number = _number(value)
    if number is None:
        return str(value)
    return f"{number:.4g}" if abs(number) < 1000 else f"{number:.0f}"
