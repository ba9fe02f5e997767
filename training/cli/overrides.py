"""`--set field=value` overrides for any config field (dotted for nested configs: `decoder.hidden=64`)."""
from __future__ import annotations

import json
from typing import Any

from engine.config import ConfigError, ConfigMixin


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """['a=1', 'decoder.hidden=64'] → {'a': 1, 'decoder': {'hidden': 64}} (values parsed as JSON when they can be)."""
    nested: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def apply_overrides(config: ConfigMixin, overrides: dict[str, Any]) -> ConfigMixin:
    merged = _merge(config.to_dict(), overrides)
    return type(config).from_dict(merged)


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
