"""Typed dataclass configs with named presets, serialised as JSON next to every output.

A config is a plain (possibly nested) dataclass. `ConfigMixin` adds:
  - `preset(name)`      build the named preset (classes list them in `PRESETS`),
  - `to_dict()/from_dict()` round-trip through JSON-able dicts (unknown keys are an error, not silently dropped),
  - `save(path)/load(path)` atomic JSON files,
  - `replace(**changes)` a validated copy.
Each subclass validates itself in `validate()` and raises `ConfigError` with a message naming the field.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from engine.io import atomic_write_text

C = TypeVar("C", bound="ConfigMixin")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


class ConfigMixin:
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # overridden by configs with constraints
        pass

    @classmethod
    def preset(cls: type[C], name: str, **overrides: Any) -> C:
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown preset {name!r} for {cls.__name__}; choose one of {sorted(cls.PRESETS)}")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known fields: {sorted(fields)}")
        kwargs = {name: _from_jsonable(hints[name], value, f"{cls.__name__}.{name}") for name, value in data.items()}
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        return cls.from_dict(data)


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


_SCALARS = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


def _from_jsonable(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint in _SCALARS and (not isinstance(value, _SCALARS[hint]) or (hint is not bool and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return hint.from_dict(value) if hasattr(hint, "from_dict") else hint(**value)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
    return value
