"""Typed policy parameters: a frozen dataclass per policy, decoded strictly from YAML.

`decode_params(cls, raw, path)` reads a mapping into `cls`, checking each field against its
annotation (`bool`, `int`, `float`, `str`, `Literal[...]`, `X | None`, `tuple[X, ...]`,
`Mapping[str, X]`), rejecting unknown keys, and then calling the dataclass's optional
`check() -> list[tuple[str, str]]` for ranges (field name, message). Every problem comes back
as a (path, message) pair; values are never echoed beyond their type or a number.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

Issue = tuple[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class NoParams:
    """For policies without parameters."""


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        self.path, self.message = path, message


_NAMES: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return type(value).__name__


def _want(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_want(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is tuple:
        return "a list"
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "a mapping"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _convert(hint: Any, value: object, path: str) -> Any:
    """`value` as `hint`, or raise _Invalid."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path)
        raise _Invalid(path, "unsupported parameter type")  # only `X | None` is used
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise _Invalid(path, f"expected {_want(hint)}, got {_show(value)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Invalid(path, f"expected a list, got {describe(value)}")
        return tuple(_convert(args[0], v, join(path, i)) for i, v in enumerate(value))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise _Invalid(path, f"expected a mapping, got {describe(value)}")
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Invalid(path, f"keys must be strings, got {describe(k)}")
            out[k] = _convert(args[1], v, join(path, k))
        return MappingProxyType(out)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, str):
        try:  # `${VAR}` expands to a string; a number written as one is fine
            return hint(value.strip())
        except ValueError:
            pass
    if hint in _NAMES:
        if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
            return value
        raise _Invalid(path, f"expected {_NAMES[hint]}, got {describe(value)}")
    raise _Invalid(path, "unsupported parameter type")


def _show(value: object) -> str:
    if isinstance(value, str) and len(value) <= 40:
        return repr(value)
    return describe(value)


def known_keys(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def decode_params(cls: type[Any], raw: object, path: str) -> tuple[Any | None, list[Issue]]:
    """Build `cls` from the YAML value `raw` (a mapping or nothing); None and issues if wrong."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return None, [(path, f"expected a mapping, got {describe(raw)}")]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    issues: list[Issue] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            issues.append((join(path, str(key)), f"unknown parameter (known: {known})"))
            continue
        try:
            values[key] = _convert(hints[key], value, join(path, key))
        except _Invalid as exc:
            issues.append((exc.path, exc.message))
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in raw:
            issues.append((join(path, name), "required"))
    if issues:
        return None, issues
    params = cls(**values)
    check = getattr(params, "check", None)
    if callable(check):
        issues = [(join(path, key), msg) for key, msg in check()]
    return (None, issues) if issues else (params, [])


def in_range(
    name: str, value: float | None, lo: float | None = None, hi: float | None = None
) -> list[Issue]:
    """A range check for `check()` methods: ('name', 'must be >= lo') style messages."""
    if value is None:
        return []
    if value != value:  # NaN
        return [(name, "must be a number")]
    if lo is not None and value < lo:
        return [(name, f"must be >= {lo:g}")]
    if hi is not None and value > hi:
        return [(name, f"must be <= {hi:g}")]
    return []
