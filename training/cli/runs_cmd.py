"""`rodinhd runs`: list the training runs under a folder with their state, progress and latest loss/PSNR."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

COLUMNS = ("name", "kind", "state", "progress", "started", "loss", "psnr", "reason")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "runs", help="list training runs (state, progress, latest loss/PSNR)",
        description="List the run folders in ROOT and one level below it. A run whose status says running but "
                    "whose process is gone is shown as failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("root", nargs="?", type=Path, default=Path("runs"), help="folder holding run folders")
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.runs import list_runs

    summaries = list_runs(args.root)
    if not summaries:
        print(f"no runs in {args.root}")
        return 0
    print(format_table([summary_row(s) for s in summaries]))
    return 0


def summary_row(summary) -> dict[str, str]:
    """One table row (all strings) for a RunSummary."""
    progress = summary.progress or {}
    total = progress.get("total")
    metrics = summary.metrics or {}
    return {
        "name": summary.name,
        "kind": summary.kind or "?",
        "state": summary.state,
        "progress": f"{progress.get('step', 0)}/{total if total is not None else '?'}",
        "started": _short_time(summary.started),
        "loss": _number(_metric(metrics, "loss"), "{:.4g}"),
        "psnr": _number(_metric(metrics, "psnr"), "{:.2f}"),
        "reason": summary.reason or "",
    }


def format_table(rows: list[dict[str, str]]) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    return "\n".join(lines)


def _metric(metrics: dict[str, Any], name: str) -> Any:
    """`name` itself, else the first metric whose key contains it (e.g. "loss_rgb")."""
    if name in metrics:
        return metrics[name]
    return next((v for k, v in metrics.items() if name in k.lower()), None)


def _number(value: Any, fmt: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return fmt.format(value) if math.isfinite(value) else "-"


def _short_time(stamp: str | None) -> str:
    """`2026-05-09T14:03:22+02:00` → `2026-05-09 14:03`."""
    if not stamp:
        return "-"
    return stamp.replace("T", " ")[:16]
