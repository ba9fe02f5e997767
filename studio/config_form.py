"""A run config's fields as form fields, and form text back into `--set FIELD=VALUE` overrides. Qt-free.

The configs are dataclasses whose fields carry attribute docstrings (a string literal right under the field, as
nerfstudio does); Python keeps those nowhere at run time, so they are read from the class source with `ast`.
Nested config dataclasses become dotted fields (`decoder.hidden`), exactly what `--set` accepts.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import textwrap
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from training.runs.configs import apply_overrides, nest_dotted

HIDDEN_FIELDS = ("device",)  # chosen with the dialog's own device box


@dataclass(frozen=True)
class FieldSpec:
    path: str              # dotted name, as `--set` takes it
    type: str              # int | float | bool | str | choice | list | json
    default: Any
    doc: str = ""
    choices: tuple = ()
    item_type: str = ""    # list: int | float | str

    @property
    def group(self) -> str:
        """The nested config holding the field ("" for top-level fields)."""
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    def tooltip(self) -> str:
        about = self.doc or "(no description in the config class)"
        return f"{self.path}: {about}\nDefault: {format_value(self, self.default) or '(empty)'}"


class FormError(ValueError):
    """A form value that cannot become the field's type; the message names the field."""


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """{field: docstring} from the attribute docstrings of `cls` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (frozen app, REPL class): no tooltips, still a form
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def config_fields(config: Any, hidden: tuple[str, ...] = HIDDEN_FIELDS, prefix: str = "") -> list[FieldSpec]:
    """Every settable leaf of a config instance, nested dataclasses flattened to dotted paths; the values of
    `config` (a preset) are the defaults. Top-level fields come first, then each nested group."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    leaves, nested = [], []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in hidden:
            continue
        value, hint = getattr(config, f.name), hints.get(f.name, Any)
        if dataclasses.is_dataclass(value):
            nested += config_fields(value, (), f"{prefix}{f.name}.")
        else:
            leaves.append(_spec(f"{prefix}{f.name}", hint, value, docs.get(f.name, "")))
    return leaves + nested


def _spec(path: str, hint: Any, value: Any, doc: str) -> FieldSpec:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return FieldSpec(path, "bool", value, doc)
    if hint in (int, float, str):
        return FieldSpec(path, hint.__name__, value, doc)
    if origin is typing.Literal:
        return FieldSpec(path, "choice", value, doc, tuple(args))
    if origin in (tuple, list) and args and args[0] in (int, float, str) and (len(args) == 1 or args[1] is ...
                                                                                or len(set(args)) == 1):
        return FieldSpec(path, "list", list(value), doc, item_type=args[0].__name__)
    return FieldSpec(path, "json", value, doc)  # Optional[...], dicts, …: typed as JSON


def format_value(spec: FieldSpec, value: Any) -> str:
    """The text a line edit shows for `value`."""
    if spec.type == "list":
        return ", ".join(str(v) for v in value)
    if spec.type == "json":
        return json.dumps(value)
    return str(value)


def parse_value(spec: FieldSpec, raw: Any) -> Any:
    """Form input (text, or a bool from a check box) → the field's value; FormError naming the field."""
    if spec.type == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise FormError(f"{spec.path}: expected true or false, got {raw!r}")
    text = str(raw).strip()
    if spec.type == "str":
        return text
    if spec.type == "choice":
        if text not in [str(c) for c in spec.choices]:
            raise FormError(f"{spec.path}: choose one of {', '.join(map(str, spec.choices))} (got {text!r})")
        return next(c for c in spec.choices if str(c) == text)
    if spec.type in ("int", "float"):
        return _number(spec.path, text, spec.type)
    if spec.type == "list":
        items = json.loads(text) if text.startswith("[") and _is_json(text) else \
            [t for t in (p.strip() for p in text.strip("[]").split(",")) if t]
        if spec.item_type == "str":
            return [str(item) for item in items]
        return [_number(spec.path, str(item), spec.item_type) for item in items]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormError(f"{spec.path}: not valid JSON ({exc.msg}): {text!r}") from None


def _number(path: str, text: str, kind: str) -> int | float:
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        what = "a whole number" if kind == "int" else "a number"
        raise FormError(f"{path}: expected {what}, got {text!r}") from None
    if kind == "float" and not math.isfinite(value):
        raise FormError(f"{path}: expected a finite number, got {text!r}")
    return value


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def changed_values(fields: list[FieldSpec], raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """({path: value} for the fields whose form value differs from the default, [error messages]).
    Fields missing from `raw` keep their default."""
    changed, errors = {}, []
    for spec in fields:
        if spec.path not in raw:
            continue
        try:
            value = parse_value(spec, raw[spec.path])
        except FormError as exc:
            errors.append(str(exc))
            continue
        if not _same(value, spec.default):
            changed[spec.path] = value
    return changed, errors


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return type(a) is type(b) and a == b or (isinstance(a, float) and isinstance(b, (int, float)) and a == b
                                             and not isinstance(b, bool))


def check_config(config: Any, changes: dict[str, Any]) -> str | None:
    """Build the config the command will build (preset + overrides) and return its validation error, if any."""
    try:
        apply_overrides(config, nest_dotted(changes))
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
        return str(exc)
    return None


def set_arguments(changes: dict[str, Any]) -> list[str]:
    """{"decoder.hidden": 16} → ["--set", "decoder.hidden=16"] (values as JSON, as the CLI parses them)."""
    args: list[str] = []
    for path, value in changes.items():
        args += ["--set", f"{path}={json.dumps(value)}"]
    return args
