"""`--set field=value` overrides for any config field (dotted for nested configs: `decoder.hidden=64`)."""
from __future__ import annotations

import json
from typing import Any

from engine.config import ConfigError
from training.runs.configs import apply_overrides, nest_dotted

__all__ = ["apply_overrides", "parse_overrides"]


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """['a=1', 'decoder.hidden=64'] → {'a': 1, 'decoder': {'hidden': 64}} (values parsed as JSON when they can be)."""
    flat: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            flat[key] = json.loads(raw)
        except json.JSONDecodeError:
            flat[key] = raw
    return nest_dotted(flat)
