"""`status.json`: the run's state, who runs it and how far it got; plus the liveness check used by listings."""
from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from engine.io import atomic_write_json, read_json

RunState = Literal["running", "finished", "failed", "stopped"]
STATES = ("running", "finished", "failed", "stopped")
DEAD_REASON = "process ended without finishing (killed?)"


def now_iso() -> str:
    """Local wall-clock time with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def hostname() -> str:
    return socket.gethostname()


def new_status(kind: str, started: str | None = None) -> dict[str, Any]:
    """A status for a run started by this process (state running)."""
    stamp = now_iso()
    return {"state": "running", "reason": None, "kind": kind, "pid": os.getpid(), "host": hostname(),
            "started": started or stamp, "updated": stamp, "progress": {"step": 0, "total": None},
            "elapsed": 0.0}


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically write status.json, stamping `updated`."""
    status["updated"] = now_iso()
    atomic_write_json(path, status)


def read_status(path: Path) -> dict[str, Any]:
    """status.json as a dict; raises OSError/ValueError when missing or damaged."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody has reaped yet still answers kill(0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def effective_state(status: dict[str, Any]) -> tuple[str, str | None]:
    """(state, reason) as a reader should see it: "running" with a dead pid on this host reads as failed."""
    state, reason = status.get("state", "unknown"), status.get("reason")
    if state == "running" and status.get("host") == hostname() and not pid_alive(status.get("pid")):
        return "failed", DEAD_REASON
    return state, reason
