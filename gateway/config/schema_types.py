"""JSON Schema building blocks for the config's schema (`gateway.config.schema`): sections,
scalars with their defaults and bounds, and `${VAR}` references.

`${VAR}` / `${VAR:-default}` references are expanded before decoding, so wherever the loader
turns a string into a number (or compares it with a name) the schema also accepts a string
holding a reference (`env_or`); booleans, lists and mappings are never read from strings.
"""

from __future__ import annotations

import typing
from typing import Any

Schema = dict[str, Any]

ENV_REF = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
ENV_STRING: Schema = {"$ref": "#/$defs/env"}
ENV_DEF: Schema = {
    "type": "string",
    "pattern": ENV_REF,
    "description": "an environment reference, ${VAR} or ${VAR:-default}, expanded at load",
}
OBJECT_OR_NULL = ["object", "null"]  # an empty YAML key (`server:`) reads as no mapping


def env_or(schema: Schema) -> Schema:
    """`schema`, or a string holding a `${VAR}` reference (checked once expanded)."""
    return {"anyOf": [schema, ENV_STRING]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def names(known: typing.Iterable[str], what: str) -> Schema:
    """A part name: the built-ins are offered (the enum comes first for completion), any other
    non-empty string is a plugin, `module:Class` or an entry-point name."""
    return {
        "description": f"{what}: a built-in, a plugin `module:Class`, or an entry-point name",
        "anyOf": [{"enum": list(known)}, {"type": "string", "minLength": 1}],
    }


def section(description: str, props: dict[str, Schema], *required: str) -> Schema:
    """A mapping with exactly these keys. Optional sections may be left empty (`server:`)."""
    out: Schema = {
        "type": "object" if required else OBJECT_OR_NULL,
        "description": description,
        "additionalProperties": False,
        "properties": props,
    }
    if required:
        out["required"] = list(required)
    return out


def _with(description: str, default: Any, schema: Schema) -> Schema:
    out: Schema = {"description": description}
    if default is not None:
        out["default"] = default
    return out | schema


def number(description: str, default: float | None = None, **bounds: float) -> Schema:
    """A number (`exclusiveMinimum=0`: the loader's `positive`), or a `${VAR}` string."""
    return _with(description, default, env_or({"type": "number", **bounds}))


def integer(description: str, default: int | None = None, **bounds: int) -> Schema:
    return _with(description, default, env_or({"type": "integer", **bounds}))


def positive(description: str, default: float | None = None) -> Schema:
    return number(description, default, exclusiveMinimum=0)


def boolean(description: str, default: bool) -> Schema:
    return _with(description, default, {"type": "boolean"})  # never read from a string


def string(description: str, default: str | None = None, **extra: Any) -> Schema:
    return _with(description, default or None, {"type": "string", **extra})


def choice(description: str, default: str | None, options: tuple[str, ...]) -> Schema:
    return _with(description, default, env_or({"enum": list(options)}))


def strings(description: str) -> Schema:
    """A mapping of names to string values (header values must be strings)."""
    return {
        "type": OBJECT_OR_NULL,
        "description": description,
        "additionalProperties": {"type": "string"},
    }
