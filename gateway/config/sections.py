"""One decoder for every section whose keys are declared fields (`health.declared`):
the type, default, checks and YAML key of each value come from its declaration."""

from __future__ import annotations

from typing import Any, TypeVar

from gateway.config.decode import Section, join
from health.declared import Entry, Part, Setting, entries, flat

T = TypeVar("T")


def _check(e: Entry, meta: Setting, value: Any) -> str | None:
    """Why `value` breaks `e`'s declared checks, or None."""
    if isinstance(value, str):
        if meta.choices and not meta.loose and value not in meta.choices:
            noun = e.key.replace("_", " ")
            return f"unknown {noun} {value!r} (known: {', '.join(meta.choices)})"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    lo, hi = meta.minimum, meta.maximum
    if meta.positive and value <= 0:
        return f"must be greater than 0, got {value}"
    if lo is not None and hi is not None and not lo <= value <= hi:
        return f"must be between {lo:g} and {hi:g}, got {value}"
    if lo is not None and value < lo:
        return f"must be {lo:g} or more, got {value}"
    if hi is not None and value > hi:
        return f"must be {hi:g} or less, got {value}"
    return None


def read_setting(s: Section, e: Entry) -> Any:
    """The value of one declared setting of `s`: its default when absent or invalid (the
    problem is recorded, with its path)."""
    meta = e.meta
    assert isinstance(meta, Setting)
    raw = s.raw(e.key)
    if raw is None:
        return e.default
    path = join(s.path, e.key)
    value = s.coerce(raw, e.kind, path, e.default)
    if isinstance(value, str):
        if meta.lower:
            value = value.strip().lower()
        if meta.or_default and not value:
            return e.default
    why = _check(e, meta, value)
    if why is not None:
        s.issues.add(path, why)
        return e.default
    return value


def decode_fields(s: Section, cls: type[Any]) -> dict[str, Any]:
    """`cls`'s declared fields read from `s` (inline parts from `s` too, nested parts from
    their sub-sections), by field name. Keys stay unchecked until `s.done()`."""
    values: dict[str, Any] = {}
    for e in entries(cls):
        if isinstance(e.meta, Part):
            if e.meta.inline:
                values[e.name] = e.hint(**decode_fields(s, e.hint))
            else:
                values[e.name] = decode_section(s.sub(e.key), e.hint)
        else:
            values[e.name] = read_setting(s, e)
    return values


def decode_section(s: Section, cls: type[T], **given: Any) -> T:
    """A whole section as `cls`: every declared key, no other (`given`: fields decoded by
    hand, or not read from the file)."""
    out = cls(**decode_fields(s, cls), **given)
    s.done()
    return out


def decode_overrides(s: Section, cls: type[Any]) -> dict[str, Any]:
    """Only the keys of `cls` that `s` sets (a route's overrides of a provider's timeouts),
    by field name; the others are known but left out. A nested part that `s` sets replaces
    the provider's whole (its unset keys take their defaults)."""
    out: dict[str, Any] = {}
    for e in flat(cls):
        if isinstance(e.meta, Part):
            if s.has(e.key):
                out[e.name] = decode_section(s.sub(e.key), e.hint)
            else:
                s.raw(e.key)
        elif s.has(e.key):
            out[e.name] = read_setting(s, e)
        else:
            s.raw(e.key)  # known, even when absent
    s.done()
    return out
