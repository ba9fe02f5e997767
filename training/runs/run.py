"""`Run`: one run folder (config.json, metrics.jsonl, checkpoints/, samples/, status.json, log.txt) and the
`active()` block that keeps status.json truthful and turns SIGTERM/SIGINT into a polite stop request."""
from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from engine.errors import UserError
from engine.io import atomic_write_json
from training.runs import configs
from training.runs.checkpoints import CheckpointStore
from training.runs.folder import (COMMAND_FILE, file_handler, read_run_config, read_status_or_empty, recorded_command,
                                  refuse_existing)
from training.runs.metrics import append_metrics, drop_partial_line, last_metrics, metrics_record, read_metrics
from training.runs.signals import stop_signals
from training.runs.status import effective_state, hostname, new_status, write_status

if TYPE_CHECKING:
    import torch

PROGRESS_INTERVAL_S = 2.0
SIGNAL_REASON = "stopped by signal"


class RunStopped(Exception):
    """Raised by a training loop (or `Run.check_stop()`) to leave `run.active()` as "stopped", not "failed"."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`ExceptionType: first line of the message`, at most `limit` characters."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Run:
    """A run folder. Make one with `Run.create` (writable) or `Run.open` (read-only)."""

    def __init__(self, path: Path, kind: str, config: dict[str, Any], status: dict[str, Any], *,
                 writable: bool, keep_last: int | None = 3, elapsed_before: float = 0.0) -> None:
        self.path = Path(path)
        self.kind = kind
        self.config = config
        self.writable = writable
        self.stop_requested = False
        self.stop_reason: str | None = None
        self._status = status
        self._store = CheckpointStore(self.path / "checkpoints", keep_last)
        self._elapsed_before = elapsed_before
        self._clock_start = time.monotonic()
        self._last_status_write = float("-inf")
        self._log_handler: logging.Handler | None = None
        self._stop_signal: str | None = None

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, root_or_path: str | Path, kind: str, config: Any, resume: bool = False, *,
               name: str | None = None, keep_last: int | None = 3, resume_may_change: tuple[str, ...] = ()) -> "Run":
        """Start a run in `root_or_path` (or in `root_or_path/name` when `name` is given). A folder that already
        holds a run is refused unless `resume=True`; resuming needs that run's config.json to equal `config`
        except for the fields in `resume_may_change` (plus the config class's `RESUME_MAY_CHANGE`)."""
        path = Path(root_or_path) / name if name else Path(root_or_path)
        data = configs.config_to_dict(config)
        may_change = configs.resume_may_change(config, resume_may_change)
        if resume:
            return cls._resume(path, kind, data, may_change, keep_last, type(config))
        return cls._start(path, kind, data, keep_last)

    @classmethod
    def _start(cls, path: Path, kind: str, data: dict[str, Any], keep_last: int | None) -> "Run":
        refuse_existing(path)
        for sub in ("checkpoints", "samples"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / "config.json", {"kind": kind, "config": data})
        if recorded_command() is not None:  # started by the rodinhd CLI: keep its command for resuming
            atomic_write_json(path / COMMAND_FILE, recorded_command())
        (path / "metrics.jsonl").touch()
        run = cls(path, kind, data, new_status(kind), writable=True, keep_last=keep_last)
        run._write_status()
        run.log(f"run created: kind={kind} pid={os.getpid()} host={hostname()}")
        return run

    @classmethod
    def _resume(cls, path: Path, kind: str, data: dict[str, Any], may_change: tuple[str, ...],
                keep_last: int | None, config_class: type | None = None) -> "Run":
        stored = read_run_config(path, action="resume")
        if stored["kind"] != kind:
            raise UserError(f"cannot resume {path}: it is a {stored['kind']!r} run, not {kind!r}")
        diffs = configs.config_differences(configs.with_defaults(stored["config"], config_class), data)
        refused = [d for d in diffs if not configs.allowed(d[0], may_change)]
        if refused:
            allowed_text = f"only {', '.join(may_change)} may change" if may_change else "no field may change"
            raise UserError(f"cannot resume {path}: the config differs from its config.json in "
                            f"{configs.describe_differences(refused)}; {allowed_text} when resuming")
        old = read_status_or_empty(path)
        state, _ = effective_state(old)
        if state == "running" and old.get("pid") != os.getpid():
            raise UserError(f"cannot resume {path}: it is still running (pid {old.get('pid')} on {old.get('host')})")
        drop_partial_line(path / "metrics.jsonl")
        for sub in ("checkpoints", "samples"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        last = last_metrics(path / "metrics.jsonl") or {}
        elapsed = max(float(old.get("elapsed") or 0.0), float(last.get("time") or 0.0))
        status = new_status(kind, started=old.get("started"))
        status["progress"] = old.get("progress") or status["progress"]
        if diffs:
            atomic_write_json(path / "config.json", {"kind": kind, "config": data})
        run = cls(path, kind, data, status, writable=True, keep_last=keep_last, elapsed_before=elapsed)
        run._write_status()
        changed = f"; changed {configs.describe_differences(diffs)}" if diffs else ""
        run.log(f"run resumed: pid={os.getpid()} host={hostname()} after {elapsed:.1f} s{changed}")
        return run

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """Open an existing run for reading (status, metrics, checkpoints); its files are not changed."""
        path = Path(path)
        stored = read_run_config(path, action="open")
        return cls(path, stored["kind"], stored["config"], read_status_or_empty(path), writable=False)

    # ---------------------------------------------------------------------------------------------- paths
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def load_config(self, cls: type) -> Any:
        """The stored config as an instance of `cls` (a ConfigMixin)."""
        return cls.from_dict(self.config)

    # -------------------------------------------------------------------------------------------- metrics
    def elapsed(self) -> float:
        """Seconds this run has been running, summed over every session (continues across resumes)."""
        return self._elapsed_before + (time.monotonic() - self._clock_start)

    def log_metrics(self, step: int, values: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        """Append {"step", "time", **values} to metrics.jsonl (NaN/inf → null); returns the written record."""
        self._require_writable()
        record = metrics_record(step, self.elapsed(), {**(values or {}), **more})
        append_metrics(self.metrics_path, record)
        return record

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_path)

    def latest_metrics(self) -> dict[str, Any] | None:
        return last_metrics(self.metrics_path)

    # ---------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, name: str, tensors: dict[str, "torch.Tensor"],
                        meta: dict[str, Any] | None = None) -> Path:
        """Atomically write checkpoints/NAME.safetensors (meta as JSON metadata); prunes old `step_N` ones."""
        self._require_writable()
        return self._store.save(name, tensors, meta)

    def load_checkpoint(self, name: str, device: str = "cpu") -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
        return self._store.load(name, device)

    def latest_checkpoint(self) -> str | None:
        return self._store.latest()

    def checkpoints(self) -> list[str]:
        return self._store.names()

    @property
    def keep_last(self) -> int | None:
        return self._store.keep_last

    # --------------------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """This run's status: the live one for a run we write, else status.json as readers see it."""
        if self.writable:
            return dict(self._status)
        status = read_status_or_empty(self.path)
        status["state"], status["reason"] = effective_state(status)
        return status

    def progress(self, step: int, total: int | None = None, force: bool = False) -> None:
        """Record progress; status.json is rewritten at most every ~2 s (always when forced or at the end)."""
        self._require_writable()
        previous = self._status.get("progress") or {}
        total = previous.get("total") if total is None else int(total)
        self._status["progress"] = {"step": int(step), "total": total}
        due = time.monotonic() - self._last_status_write >= PROGRESS_INTERVAL_S
        if force or due or (total is not None and step >= total):
            self._write_status()

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the training loop to save and leave (what SIGTERM does); the loop polls `stop_requested`."""
        self.stop_requested = True
        self.stop_reason = self.stop_reason or reason

    def check_stop(self) -> None:
        """Raise RunStopped if a stop was requested (call after saving a checkpoint)."""
        if self.stop_requested:
            raise RunStopped(self.stop_reason or SIGNAL_REASON)

    @contextmanager
    def active(self) -> Iterator["Run"]:
        """Mark the run running while the block executes; SIGTERM/SIGINT only set `stop_requested` (a second
        SIGINT raises KeyboardInterrupt). Leaves the run finished, stopped (RunStopped, stop requested or
        KeyboardInterrupt) or failed ("Type: message", exception re-raised)."""
        self._require_writable()
        with stop_signals(self._on_signal), self._logging_to_file():
            self._set_state("running", None)
            try:
                yield self
            except RunStopped as exc:
                self._finish("stopped", self.stop_reason or str(exc) or SIGNAL_REASON)
            except KeyboardInterrupt:
                self._finish("stopped", "interrupted (KeyboardInterrupt)")
                raise
            except SystemExit as exc:
                if exc.code in (0, None):
                    self._finish_normally()
                else:
                    self._finish("failed", one_line(exc))
                raise
            except BaseException as exc:
                self.log(f"failed: {one_line(exc)}\n{traceback.format_exc().rstrip()}", logging.ERROR)
                self._finish("failed", one_line(exc))
                raise
            else:
                self._finish_normally()

    def log(self, message: str, level: int = logging.INFO) -> None:
        """Append a message to log.txt (while active, other loggers' records at INFO+ are captured there too)."""
        self._require_writable()
        record = logging.LogRecord("run", level, __file__, 0, message, None, None)
        if self._log_handler is not None:
            self._log_handler.handle(record)
            return
        handler = file_handler(self.log_path)
        try:
            handler.handle(record)
        finally:
            handler.close()

    # ------------------------------------------------------------------------------------------- internals
    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGINT and self.stop_requested:
            raise KeyboardInterrupt
        self.request_stop(SIGNAL_REASON)
        self._stop_signal = signal.Signals(signum).name

    def _finish_normally(self) -> None:
        if self.stop_requested:
            self._finish("stopped", self.stop_reason or SIGNAL_REASON)
        else:
            self._finish("finished", None)

    def _finish(self, state: str, reason: str | None) -> None:
        detail = f" ({self._stop_signal})" if self._stop_signal and state == "stopped" else ""
        self.log(f"run {state}{detail}" + (f": {reason}" if reason else ""))
        self._set_state(state, reason)

    def _set_state(self, state: str, reason: str | None) -> None:
        self._status.update(state=state, reason=reason, pid=os.getpid(), host=hostname())
        self._write_status()

    def _write_status(self) -> None:
        self._status["elapsed"] = round(self.elapsed(), 3)
        write_status(self.path / "status.json", self._status)
        self._last_status_write = time.monotonic()

    @contextmanager
    def _logging_to_file(self) -> Iterator[None]:
        handler = file_handler(self.log_path)
        root = logging.getLogger()
        root.addHandler(handler)
        self._log_handler = handler
        try:
            yield
        finally:
            self._log_handler = None
            root.removeHandler(handler)
            handler.close()

    def _require_writable(self) -> None:
        if not self.writable:
            raise RuntimeError(f"run {self.path} was opened read-only; use Run.create(..., resume=True) to write")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, kind={self.kind!r})"
