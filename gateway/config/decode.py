"""A strict reader for YAML mappings that collects every problem with its path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from policies.params import describe

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    message: str
    line: int | None = None  # 1-based, for YAML syntax errors
    column: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """The configuration is invalid; `issues` lists every problem found, each with its path."""

    def __init__(self, issues: list[ConfigIssue], source: str = "") -> None:
        self.issues = issues
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(str(i) for i in issues))


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class Issues:
    """An accumulator of problems; decoding goes on after an error so all are reported.

    One problem per path: the first is the cause, later ones at that spot are consequences
    (an unset `${VAR}` would otherwise also read as a missing value).
    """

    def __init__(self) -> None:
        self.items: list[ConfigIssue] = []
        self._paths: set[str] = set()

    def add(self, path: str, message: str) -> None:
        if path in self._paths:
            return
        self._paths.add(path)
        self.items.append(ConfigIssue(path, message))


class Section:
    """Reads the keys of one mapping; `done()` reports keys nobody asked for."""

    def __init__(self, data: object, path: str, issues: Issues) -> None:
        self.path = path
        self.issues = issues
        self.ok = isinstance(data, Mapping)
        if data is None:
            self.data: Mapping[str, Any] = {}
            self.ok = True
        elif isinstance(data, Mapping):
            self.data = data
        else:
            issues.add(path, f"expected a mapping, got {type(data).__name__}")
            self.data = {}
        self._seen: set[str] = set()

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type[T], default: T) -> T:
        value = self.raw(key)
        if value is None:
            return default
        return self.coerce(value, kind, join(self.path, key), default)

    def coerce(self, value: Any, kind: type[T], path: str, default: T) -> T:
        """`value` as `kind`, or `default` and an issue. Values are never echoed: any of them
        may be a secret (an unquoted numeric API key is an int to YAML)."""
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if kind in (int, float) and isinstance(value, str):
            # `${PORT:-8080}` expands to a string; a number written as one is fine.
            try:
                return kind(value.strip())  # type: ignore[call-arg]
            except ValueError:
                pass
        want = _TYPE_NAMES.get(kind, kind.__name__)
        if kind is not bool and isinstance(value, bool):
            self.issues.add(path, f"expected {want}, got a boolean")
            return default
        if not isinstance(value, kind):
            self.issues.add(path, f"expected {want}, got {describe(value)}")
            return default
        return value

    def positive(self, key: str, kind: type[T], default: T) -> T:
        value = self.get(key, kind, default)
        if isinstance(value, int | float) and value <= 0:
            self.issues.add(join(self.path, key), f"must be greater than 0, got {value}")
            return default
        return value

    def sub(self, key: str) -> Section:
        return Section(self.raw(key), join(self.path, key), self.issues)

    def done(self) -> None:
        for key in self.data:
            if key not in self._seen:
                known = ", ".join(sorted(self._seen))
                self.issues.add(join(self.path, str(key)), f"unknown key (known keys: {known})")
