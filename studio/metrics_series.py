"""Curves from a run's metrics.jsonl, read incrementally (only the bytes appended since the last poll). Qt-free."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from training.runs.metrics import parse_line

NOT_CURVES = ("step", "time", "epoch", "visit")
FORGETTING_PREFIX = "psnr/"  # stage 1 logs the held-out PSNR of every avatar seen so far as psnr/<avatar>
DEFAULT_PICKS = ("psnr", "train_psnr", "test_psnr", "lr")  # and every key with "loss" in it


class MetricsFollower:
    """The records of a JSON-lines file, kept up to date by `poll()`; a half-written last line waits for its end,
    and a file that shrank (a resumed run drops a partial line) is read again from the start."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        self._offset = 0
        self._pending = b""
        self._inode: int | None = None

    def poll(self) -> bool:
        """Read what was appended; True when records were added or the file was re-read."""
        try:
            stat = self.path.stat()
        except OSError:
            return False
        reset = stat.st_size < self._offset or (self._inode is not None and stat.st_ino != self._inode)
        if reset:
            self.records, self._offset, self._pending = [], 0, b""
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return reset
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return reset
        self._offset += len(data)
        *complete, self._pending = (self._pending + data).split(b"\n")
        parsed = (parse_line(line.decode("utf-8", errors="replace")) for line in complete)
        added = [r for r in parsed if r is not None]
        self.records += added
        return bool(added) or reset


def curve_keys(records: list[dict[str, Any]]) -> list[str]:
    """Numeric keys worth plotting, in first-seen order (forgetting keys excluded: they get their own plot)."""
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in NOT_CURVES and not key.startswith(FORGETTING_PREFIX) and _is_number(value):
                keys.setdefault(key)
    return list(keys)


def forgetting_keys(records: list[dict[str, Any]], limit: int = 8) -> list[str]:
    """`psnr/<avatar>` keys in the order the avatars appeared (the earliest ones show forgetting, Fig. 2)."""
    keys: dict[str, None] = {}
    for record in records:
        for key in record:
            if key.startswith(FORGETTING_PREFIX):
                keys.setdefault(key)
    return list(keys)[:limit]


def default_picks(keys: list[str]) -> list[str]:
    """Losses, PSNR and learning rate when present, else the first key."""
    picked = [k for k in keys if "loss" in k.lower() or k in DEFAULT_PICKS]
    return picked[:4] or keys[:1]


def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one key over the records that have a finite value for it. A resumed run redoes the steps
    after its last checkpoint: when the step goes back, the points it replaces are dropped."""
    steps, values = [], []
    for index, record in enumerate(records):
        value = record.get(key)
        if _is_number(value) and math.isfinite(value):
            step = float(record["step"]) if _is_number(record.get("step")) else float(index)
            while steps and steps[-1] >= step:
                steps.pop()
                values.pop()
            steps.append(step)
            values.append(float(value))
    return steps, values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
