"""Turn metric values and checkpoint metadata into strict JSON: NaN/inf become null, numeric scalars become
plain Python numbers (0-d tensors and numpy scalars included), nothing ever fails on a bad float."""
from __future__ import annotations

import math
from typing import Any


def json_scalar(value: Any, where: str = "value") -> Any:
    """One metric value as a JSON-safe scalar: None/bool/int/str unchanged, floats (NaN/inf → None), and
    objects with `.item()` (0-d tensors, numpy scalars) unwrapped. Anything else is a TypeError naming `where`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError) as exc:  # a tensor/array with more than one element
            raise TypeError(f"{where}: expected a single number, got {type(value).__name__} ({exc})") from None
        return json_scalar(value, where)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: expected a number or string, got {type(value).__name__}") from None
    return number if math.isfinite(number) else None


def json_safe(value: Any, where: str = "value") -> Any:
    """Recursively JSON-safe copy of dicts/lists/tuples of scalars (keys become strings)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return json_scalar(value, where)
