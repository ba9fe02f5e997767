"""Install SIGTERM/SIGINT handlers for the duration of a block and restore the previous ones afterwards."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_signals(on_signal: Callable[[int], None]) -> Iterator[bool]:
    """Route SIGTERM and SIGINT to `on_signal(signum)` inside the block; yields whether handlers were installed
    (Python only allows that in the main thread — elsewhere the block runs with the handlers left alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum, frame) -> None:
        on_signal(signum)

    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
