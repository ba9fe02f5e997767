"""The training processes the studio starts: launch, polite stop (SIGTERM, SIGKILL after a grace period), reaping.
Qt-free; the training tab calls `tick()` from its timer.

Each run is its own process in its own session, with its output appended to RUN/launch.log and its command line
kept in RUN/launch.json (written atomically), so Resume can relaunch it. Why subprocess and not QProcess: an
attached QProcess kills its child when the studio closes (a day of training lost to a closed window), and
PySide6's QProcess.startDetached() does not give the pid back, which Stop needs. A Popen child survives the
studio; while the studio runs, `tick()` reaps it and records its exit code.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.io import atomic_write_json, read_json
from training.runs import pid_alive
from training.runs.status import now_iso

LAUNCH_FILE = "launch.json"
OUTPUT_FILE = "launch.log"
KILL_AFTER_S = 20.0
REPO_ROOT = Path(__file__).resolve().parents[1]


def read_launch(folder: Path) -> dict[str, Any] | None:
    """RUN/launch.json, or None when missing or damaged."""
    try:
        record = read_json(Path(folder) / LAUNCH_FILE)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("argv"), list) else None


def write_launch(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / LAUNCH_FILE, record)


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The studio's environment, offline, with this checkout importable (`python -m training.cli.main`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")  # the log view shows output as it is printed
    env.update(extra or {})
    return env


@dataclass
class _Stopping:
    pid: int
    group: bool
    deadline: float


class RunProcesses:
    def __init__(self, kill_after_s: float = KILL_AFTER_S) -> None:
        self.kill_after_s = kill_after_s
        self.children: dict[Path, subprocess.Popen] = {}
        self.stopping: dict[Path, _Stopping] = {}

    # ----------------------------------------------------------------------------------------------- launch
    def start(self, folder: Path, argv: list[str], kind: str, total: int | None = None,
              cwd: Path | None = None) -> int:
        """Start `argv` for the run in `folder` (created if needed); returns the pid. OSError when it cannot start.
        A second start in the same folder (Resume) keeps the record and appends to the output."""
        folder = Path(folder)
        if self.is_running(folder):
            raise OSError(f"{folder.name} is already running")
        folder.mkdir(parents=True, exist_ok=True)
        record = read_launch(folder) or {"created": now_iso()}
        record.update(argv=list(argv), cwd=str(cwd or Path.cwd()), kind=kind, total=total, pid=None,
                      launched=time.time(), launched_at=now_iso(), stop_requested=False, exit_code=None, ended=None,
                      launches=int(record.get("launches") or 0) + 1)
        write_launch(folder, record)
        with open(folder / OUTPUT_FILE, "a", encoding="utf-8") as out:
            out.write(f"\n[{now_iso()}] $ {' '.join(argv)}\n")
            out.flush()
            process = subprocess.Popen(argv, cwd=record["cwd"], env=child_environment(), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.children[folder] = process
        record["pid"] = process.pid
        write_launch(folder, record)
        return process.pid

    # ------------------------------------------------------------------------------------------------- stop
    def stop(self, folder: Path, pid: int | None) -> str:
        """Ask the run to checkpoint and leave (SIGTERM); it is killed if it is still there after the grace
        period. `pid` is the process to signal (the launch's, or a CLI run's from its status.json)."""
        folder = Path(folder)
        record = read_launch(folder)
        if record is not None and record.get("pid") == pid:
            record["stop_requested"] = True
            write_launch(folder, record)
        if pid is None or not pid_alive(pid):
            return f"{folder.name} is not running"
        group = _leads_group(pid)  # our launches lead their own session: torchrun's ranks get the signal too
        _signal(pid, signal.SIGTERM, group)
        self.stopping[folder] = _Stopping(pid, group, time.monotonic() + self.kill_after_s)
        return f"Stopping {folder.name}: it saves a checkpoint, then exits (killed after {self.kill_after_s:g} s)"

    def kill_all(self) -> None:
        """Kill every process this object started (tests; never called when the studio closes)."""
        for process in self.children.values():
            if process.poll() is None:
                _signal(process.pid, signal.SIGKILL, _leads_group(process.pid))
                process.wait(10)
        self.tick()

    # ------------------------------------------------------------------------------------------------- poll
    def is_running(self, folder: Path) -> bool:
        process = self.children.get(Path(folder))
        return process is not None and process.poll() is None

    def tick(self) -> list[Path]:
        """Reap finished children (recording exit code and time in launch.json) and kill runs whose stop is
        overdue. Returns the folders whose process ended."""
        ended = []
        for folder, process in list(self.children.items()):
            code = process.poll()
            if code is None:
                continue
            del self.children[folder]
            self.stopping.pop(folder, None)
            record = read_launch(folder)
            if record is not None and record.get("pid") == process.pid:
                record.update(exit_code=code, ended=now_iso())
                write_launch(folder, record)
            ended.append(folder)
        now = time.monotonic()
        for folder, stopping in list(self.stopping.items()):
            if not pid_alive(stopping.pid):
                del self.stopping[folder]
            elif now >= stopping.deadline:
                _signal(stopping.pid, signal.SIGKILL, stopping.group)
                del self.stopping[folder]
        return ended


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
