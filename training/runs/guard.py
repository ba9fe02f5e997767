"""Stop training early when the loss turns NaN/inf or explodes relative to its recent running median."""
from __future__ import annotations

import math
import statistics
from collections import deque


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or spiked; `step` and `loss` say where. The last saved checkpoint is untouched."""

    def __init__(self, message: str, step: int, loss: float) -> None:
        super().__init__(message)
        self.step = step
        self.loss = loss


class LossGuard:
    """`check(step, loss)` raises TrainingDiverged when the loss is not finite, or (once at least `min_history`
    finite losses are known) exceeds `max_factor` × the median of the last `window` finite losses. The spike test
    only applies while every loss in the window is positive (a ratio means nothing for losses that can be ≤ 0)."""

    def __init__(self, max_factor: float = 10.0, window: int = 50, min_history: int = 10) -> None:
        if max_factor <= 1.0:
            raise ValueError(f"max_factor must be > 1, got {max_factor}")
        if window < 1 or min_history < 1:
            raise ValueError(f"window and min_history must be ≥ 1, got {window}, {min_history}")
        self.max_factor = float(max_factor)
        self.window = int(window)
        self.min_history = min(int(min_history), self.window)
        self.history: deque[float] = deque(maxlen=self.window)

    def reset(self) -> None:
        """Forget the history: a new task (another avatar) starts from a different loss level."""
        self.history.clear()

    def check(self, step: int, loss: float) -> float:
        """Validate one loss value (float or 0-d tensor); returns it as a float when it is fine."""
        value = float(loss)
        if not math.isfinite(value):
            kind = "NaN" if math.isnan(value) else "infinite"
            raise TrainingDiverged(f"loss became {kind} at step {step}; the last good checkpoint is kept",
                                   step, value)
        if len(self.history) >= self.min_history:
            median = statistics.median(self.history)
            if min(self.history) > 0 and value > self.max_factor * median:
                raise TrainingDiverged(
                    f"loss jumped to {value:.4g} at step {step}, more than {self.max_factor:g}× the running median "
                    f"{median:.4g} of the last {len(self.history)} steps; training diverged; "
                    "the last good checkpoint is kept", step, value)
        self.history.append(value)
        return value
