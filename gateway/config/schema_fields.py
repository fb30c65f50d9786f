"""The JSON Schema of the sections whose keys are declared fields (`health.declared`):
each key's type, default, description and range come from its declaration."""

from __future__ import annotations

from typing import Any

from gateway.config.schema_types import Schema, boolean, choice, integer, number, section, string
from health.declared import Entry, Part, Setting, flat


def setting_schema(e: Entry, *, with_default: bool = True, **extra: Any) -> Schema:
    """One declared setting: `with_default=False` where the default is another key's (a
    route's `max_attempts` is `resilience.max_attempts`)."""
    meta = e.meta
    assert isinstance(meta, Setting)
    default = e.default if with_default and not meta.secret else None
    kind = e.kind
    if kind is bool:
        return boolean(meta.doc, bool(default)) if with_default else _no_default(meta.doc)
    if kind is str:
        if meta.choices:
            return choice(meta.doc, default, meta.choices)
        return string(meta.doc, default, **extra)
    bounds: dict[str, Any] = {}
    if meta.positive:
        bounds = {"minimum": 1} if kind is int else {"exclusiveMinimum": 0}
    if meta.minimum is not None:
        bounds["minimum"] = meta.minimum
    if meta.maximum is not None:
        bounds["maximum"] = meta.maximum
    if kind is int:
        return integer(meta.doc, default, **{k: int(v) for k, v in bounds.items()})
    return number(meta.doc, default, **bounds)


def _no_default(doc: str) -> Schema:
    return {"description": doc, "type": "boolean"}


def properties(
    cls: type[Any], *, with_default: bool = True, extra: dict[str, Schema] | None = None
) -> dict[str, Schema]:
    """The keys of `cls`'s section (inline parts expanded, nested parts as sub-sections);
    `extra` adds schema keywords to a key (a pattern the loader checks by hand)."""
    extra = extra or {}
    out: dict[str, Schema] = {}
    for e in flat(cls):
        if isinstance(e.meta, Part):
            out[e.key] = section(e.meta.doc, properties(e.hint, with_default=with_default))
        else:
            out[e.key] = setting_schema(e, with_default=with_default, **extra.get(e.key, {}))
    return out


def section_of(cls: type[Any], description: str, **extra: Schema) -> Schema:
    """The whole section of `cls`: exactly its declared keys."""
    return section(description, properties(cls, extra=extra))
