"""`metrics.jsonl`: one JSON object per line, appended; readers tolerate a half-written last line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.runs.jsonsafe import json_scalar


def metrics_record(step: int, time: float, values: dict[str, Any]) -> dict[str, Any]:
    """The line written for one log call: {"step", "time", **values}, every value JSON-safe."""
    record: dict[str, Any] = {"step": int(step), "time": round(float(time), 3)}
    for key, value in values.items():
        if key in ("step", "time"):
            raise ValueError(f"metric name {key!r} is reserved (every line already has step and time)")
        record[str(key)] = json_scalar(value, f"metric {key!r}")
    return record


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one record as a single line (one write call, so a crash leaves at most one partial line)."""
    line = json.dumps(record, allow_nan=False, separators=(", ", ": ")) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete record in the file, in order; unparsable lines (a half-written last one) are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        record = parse_line(line)
        if record is not None:
            records.append(record)
    return records


def last_metrics(path: Path, tail_bytes: int = 65536) -> dict[str, Any] | None:
    """The last complete record, reading only the end of the file; None when there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            tail = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    for line in reversed(tail.splitlines()):
        record = parse_line(line)
        if record is not None:
            return record
    return None if size <= tail_bytes else (read_metrics(path) or [None])[-1]


def drop_partial_line(path: Path) -> None:
    """Cut a half-written last line (no trailing newline) so the next append starts on a fresh line."""
    path = Path(path)
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def parse_line(line: str) -> dict[str, Any] | None:
    """One metrics line as a dict; None for a blank, unparsable (half-written) or non-object line."""
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
