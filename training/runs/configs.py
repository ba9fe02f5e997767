"""Run configs as JSON dicts, and the comparison that decides whether a run may be resumed with a new config."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_ABSENT = object()


def config_to_dict(config: Any) -> dict[str, Any]:
    """A ConfigMixin (anything with `to_dict()`) or a mapping, as a plain JSON round-tripped dict."""
    if hasattr(config, "to_dict"):
        data = config.to_dict()
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise TypeError(f"a run config must be a ConfigMixin or a dict, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run config is not JSON-serialisable: {exc}") from None


def with_defaults(stored: dict[str, Any], config_class: type | None) -> dict[str, Any]:
    """A stored config with fields added to the class since the run started filled with their defaults, so a
    newer version of the code can resume an older run (an absent field means "the default of that time")."""
    if config_class is None or not hasattr(config_class, "from_dict"):
        return stored
    try:
        return config_to_dict(config_class.from_dict(stored))
    except Exception:  # noqa: BLE001 - a stored config the class cannot read is compared as it is
        return stored


def resume_may_change(config: Any, extra: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """Fields allowed to differ on resume: `extra` plus the config class's `RESUME_MAY_CHANGE`, if any."""
    declared = getattr(config, "RESUME_MAY_CHANGE", ()) or ()
    return tuple(dict.fromkeys([*declared, *extra]))


def config_differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted field, old, new) for every leaf that differs; absent sides are reported as `_ABSENT`."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [(prefix.rstrip(".") or "(config)", old, new)]
    found = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            found += config_differences(a, b, f"{prefix}{key}.")
        elif a is _ABSENT or b is _ABSENT or a != b:
            found.append((f"{prefix}{key}", a, b))
    return found


def allowed(field: str, may_change: tuple[str, ...]) -> bool:
    """Whether `field` (dotted) is one of `may_change` or lies inside one of them."""
    return any(field == m or field.startswith(m + ".") for m in may_change)


def describe_differences(diffs: list[tuple[str, Any, Any]]) -> str:
    """`steps (1000 → 2000), model.width (absent → 64)`."""
    return ", ".join(f"{field} ({_show(a)} → {_show(b)})" for field, a, b in diffs)


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def nest_dotted(flat: dict[str, Any]) -> dict[str, Any]:
    """{"decoder.hidden": 16} → {"decoder": {"hidden": 16}} (dotted paths name fields of nested configs)."""
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        node = nested
        *parents, leaf = path.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """`config` (a ConfigMixin) with nested `overrides` merged in, built (so validated) by its class."""
    return type(config).from_dict(_merge(config.to_dict(), overrides))


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
