"""Local worker pools: results come back, and a worker that cannot start is reported instead of hanging."""
from __future__ import annotations

import importlib
import threading

from engine.errors import UserError
from training.worker_pool import WorkerStartError, spawn_pool


def _collect(workers: int, module: str, jobs: list[int]) -> dict:
    """Run the pool in a thread so a regression (the endless respawn of failing workers) fails, not hangs."""
    outcome: dict = {}

    def body() -> None:
        try:
            with spawn_pool(workers, importlib.import_module, (module,)) as pool:
                outcome["results"] = sorted(pool.imap_unordered(abs, jobs))
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            outcome["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the pool hung"
    return outcome


def test_pool_returns_every_result():
    assert _collect(2, "math", [-3, 1, -2, 5]) == {"results": [1, 2, 3, 5]}


def test_failed_worker_start_is_raised_in_the_parent():
    outcome = _collect(2, "rodinhd_no_such_module", [-1, -2, -3])
    error = outcome["error"]
    assert isinstance(error, WorkerStartError) and isinstance(error, UserError)
    assert "could not start" in str(error)
    assert "ModuleNotFoundError" in str(error) and "rodinhd_no_such_module" in str(error)

