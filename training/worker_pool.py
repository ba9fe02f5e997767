"""Local worker processes that fail loudly when they cannot start.

`multiprocessing.Pool` replaces a worker whose initializer raises with a fresh one, which fails the same way, for
ever: the parent waits with no result and no message (seen on a GPU machine without moderngl: `rodinhd synth
--workers 8` hung until killed). Here a failed start is remembered in the worker and raised, as
`WorkerStartError`, in the parent by the first task it is given.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from engine.errors import UserError


class WorkerStartError(UserError):
    """A worker process could not set itself up (a missing package, no GL driver, an unreadable decoder …)."""


_START_ERROR: list[str] = []  # in a worker: why its initializer failed


def _guarded_init(initializer: Callable, initargs: tuple) -> None:
    try:
        initializer(*initargs)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent by the worker's first task
        _START_ERROR.append(str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")


def _guarded_task(fn: Callable, job):
    if _START_ERROR:
        raise WorkerStartError(f"worker processes could not start: {_START_ERROR[0]}")
    return fn(job)


class WorkerPool:
    """The part of a pool the project uses: results of `fn(job)` as they complete."""

    def __init__(self, pool) -> None:
        self._pool = pool

    def imap_unordered(self, fn: Callable, jobs: Iterable) -> Iterator:
        return self._pool.imap_unordered(functools.partial(_guarded_task, fn), jobs)


@contextmanager
def spawn_pool(workers: int, initializer: Callable, initargs: tuple = ()) -> Iterator[WorkerPool]:
    """`workers` fresh interpreters (spawn: GL and CUDA contexts must not be forked), each set up once by
    `initializer(*initargs)`; terminated on leaving, so a stop loses only the tasks in flight."""
    pool = mp.get_context("spawn").Pool(workers, _guarded_init, (initializer, initargs))
    try:
        yield WorkerPool(pool)
    finally:
        pool.terminate()
        pool.join()
