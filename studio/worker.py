"""Long work off the UI thread (napari's generator workers, reduced to what the studio needs).

    task = Task(lambda report: pipe(image, callback=lambda p: report(p)))
    task.progressed.connect(show_preview); task.succeeded.connect(show_avatar); task.failed.connect(show_error)
    task.start(); ...; task.cancel()

`fn(report)` runs in a QThread. `report(payload)` forwards progress to the UI thread and returns False once the task
is cancelled, which is exactly the engine's callback contract (return False → engine.errors.Cancelled). A user's
mistake (UserError) arrives as `failed(message)`; anything else as `failed("unexpected error: …")` with the
traceback on stderr — the studio never dies with the worker.
"""
from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QThread, Signal

from engine.errors import Cancelled, UserError

Report = Callable[[Any], bool]


class Task(QThread):
    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    done = Signal()  # after any of the three outcomes

    def __init__(self, fn: Callable[[Report], Any], name: str = "task", parent=None) -> None:
        super().__init__(parent)
        self.fn, self.name = fn, name
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, payload: Any) -> bool:
        if self._cancel.is_set():
            return False
        self.progressed.emit(payload)
        return True

    def run(self) -> None:  # noqa: D401 - QThread entry point, runs on the worker thread
        try:
            result = self.fn(self.report)
            if self._cancel.is_set():
                raise Cancelled()
        except Cancelled:
            self.cancelled.emit()
        except UserError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker must never take the studio down
            traceback.print_exc()
            self.failed.emit(f"unexpected error in {self.name}: {type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(result)
        self.done.emit()
