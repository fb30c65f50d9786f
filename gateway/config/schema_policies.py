"""The `policy:` and `tasks:` parts of the config's JSON Schema, read off the registry.

Each built-in part's params schema is derived from its params dataclass: the fields and their
type hints give the keys and types, the defaults give `default`, a trailing `# comment` on a
field gives its `description`, and the ranges come from the dataclass's own `check()`, probed
with one far-out value per numeric field (`policies.params.in_range` words its messages
`must be >= LO` / `must be <= HI`). A param added to a dataclass thus appears in the schema
with its type, default and range without touching this module.

The building blocks (sections, scalars, `${VAR}` references) are `gateway.config.schema_types`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from gateway.config.schema_types import OBJECT_OR_NULL, Schema, env_or, names, ref
from policies.compose import TIE_BREAKS
from policies.registry import FILTERS, SCORERS, SHORTHANDS, Builtin
from policies.tasks import SCAN_CHARS, SCOPES, TASK_NAME
from policies.types import DEFAULT_TASK

# Words from docs/policies.md (by `Class.field` or `field`); other fields: their line's comment.
_DOCS = {
    "floors": "floor per task; a value replaces the whole default map",
    "quality_floor": "floor for tasks not in floors",
    "CostQualityParams.cost_weight": "tradeoff mode: weight of the relative cost against quality",
    "unknown_ms": "load (ms) of a target with no samples yet; null: the median of the others",
    "latency_ref_s": "seconds: an answer this slow loses latency_weight of its reward",
    "cost_ref_usd": "US dollars: an answer this dear loses cost_weight of its reward",
    "mode": "`floor`: the cheapest target meeting the task's quality floor first; "
    "`tradeoff`: quality - cost_weight x relative cost",
    "output_tokens": "assumed answer length when the request sets no max_tokens",
    "max_cost": "US dollars per request; a request's own max_cost wins",
}
_COMMENT = re.compile(r"^\s+(\w+):[^#]*#\s*(.+?)\s*$")
_BOUND = re.compile(r"must be ([<>])= (\S+)$")
_PROBE_KEY = "probe"


def _comments(cls: type[Any]) -> dict[str, str]:
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source shipped: the fallbacks below still apply
        return {}
    return {m[1]: m[2] for line in source.splitlines() if (m := _COMMENT.match(line))}


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _bounds(cls: type[Any], field: str, hint: Any) -> Schema:
    """`minimum`/`maximum` of a numeric field (or of a mapping's values), from `check()`."""
    check = getattr(cls, "check", None)
    if check is None:
        return {}
    kind, key = hint, field
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        kind = next(a for a in typing.get_args(hint) if a is not type(None))
    elif origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        kind, key = typing.get_args(hint)[1], f"{field}.{_PROBE_KEY}"
    if kind not in (int, float):
        return {}
    out: Schema = {}
    for far in (-(10**12), 10**12):
        value = kind(far)
        probe = {_PROBE_KEY: value} if key != field else value
        try:
            issues = dataclasses.replace(cls(), **{field: probe}).check()
        except Exception:  # a check that cannot take the probe gives no range
            continue
        for name, message in issues:
            m = _BOUND.search(message)
            if name == key and m:
                out["minimum" if m[1] == ">" else "maximum"] = _number(m[2])
    return out


def _hint(hint: Any, bounds: Schema) -> Schema:
    """The schema of a value decoded by `policies.params` as `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = _hint(next(a for a in args if a is not type(None)), bounds)
        return {"anyOf": [*inner.get("anyOf", [inner]), {"type": "null"}]}
    if origin is Literal:
        enum: Schema = {"enum": list(args)}
        return env_or(enum) if all(isinstance(a, str) for a in args) else enum
    if origin is tuple:
        return {"type": "array", "items": _hint(args[0], {})}
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return {"type": "object", "additionalProperties": _hint(args[1], bounds)}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return env_or({"type": "integer", **bounds})
    if hint is float:
        return env_or({"type": "number", **bounds})
    if hint is str:
        return {"type": "string"}
    return {}  # a type policies.params does not decode: no constraint


def _json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    return value


def params_schema(cls: type[Any]) -> Schema:
    """The schema of the `params:` mapping that `policies.params.decode_params` reads into
    `cls`: every field, its type, default, range and comment; no other key."""
    hints = typing.get_type_hints(cls)
    comments = _comments(cls)
    props: dict[str, Schema] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        prop: Schema = {}
        text = _DOCS.get(f"{cls.__name__}.{f.name}") or _DOCS.get(f.name) or comments.get(f.name)
        if text:
            prop["description"] = text
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
            required.append(f.name)
        if default is not None:
            prop["default"] = _json(default)
        props[f.name] = prop | _hint(hints[f.name], _bounds(cls, f.name, hints[f.name]))
    out: Schema = {
        "type": OBJECT_OR_NULL,
        "description": f"params ({cls.__name__})" if props else "this part takes no params",
        "properties": props,
        "additionalProperties": False,
    }
    if required:
        out["required"] = required
    return out


def _by_name(table: Mapping[str, Builtin]) -> list[Schema]:
    """`if name is <built-in> then params follow its dataclass`; other names: any params."""
    return [
        {
            "if": {"properties": {"name": {"const": name}}, "required": ["name"]},
            "then": {"properties": {"params": ref(entry.params.__name__)}},
        }
        for name, entry in table.items()
    ]


_ANY_PARAMS: Schema = {
    "type": OBJECT_OR_NULL,
    "description": "typed params of the part (see docs/policies.md); a plugin's own Params",
}


def _item(table: Mapping[str, Builtin], what: str, extra: dict[str, Schema]) -> Schema:
    return {
        "oneOf": [
            names(table, what),
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {"name": names(table, what), **extra, "params": _ANY_PARAMS},
                "allOf": _by_name(table),
            },
        ]
    }


def policy_defs() -> dict[str, Schema]:
    """`$defs` for a route's `policy:` (`#/$defs/policy`) and everything it refers to."""
    defs: dict[str, Schema] = {}
    for entry in (*FILTERS.values(), *SCORERS.values()):
        defs.setdefault(entry.params.__name__, params_schema(entry.params))
    shorthands = {name: SCORERS[name] for name in SHORTHANDS}
    weight: Schema = {
        "description": "share of this scorer in the weighted mean of the scores",
        "default": 1.0,
    } | env_or({"type": "number", "minimum": 0})
    defs["filter"] = _item(FILTERS, "a filter", {})
    defs["scorer"] = _item(SCORERS, "a scorer", {"weight": weight})
    defs["policyNamed"] = {
        "type": "object",
        "description": "a policy with typed params: {name, params}",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": names(SHORTHANDS, "a policy"), "params": _ANY_PARAMS},
        "allOf": _by_name(shorthands),
    }
    defs["policyComposite"] = {
        "type": "object",
        "description": "filters, then weighted scorers, then a tie-break",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "filters": {
                "type": ["array", "null"],
                "description": "applied in order; each drops the candidates it rejects",
                "items": ref("filter"),
            },
            "scorers": {
                "type": ["array", "null"],
                "description": "each scores the survivors in [0, 1]; the weighted mean ranks",
                "items": ref("scorer"),
            },
            "tie_break": {
                "description": "equal scores: the route's order, or random",
                "default": "priority",
            }
            | env_or({"enum": list(TIE_BREAKS)}),
        },
    }
    defs["policy"] = {
        "description": "how candidates are ranked: a name, {name, params}, or "
        "{filters, scorers, tie_break} (docs/policies.md)",
        "default": "priority",
        "oneOf": [names(SHORTHANDS, "a policy"), ref("policyNamed"), ref("policyComposite")],
    }
    return defs


def tasks_defs() -> dict[str, Schema]:
    """`$defs` for `tasks:` (`#/$defs/tasks`), as `policies.tasks.decode_task_rules` reads it."""
    task_name = env_or({"type": "string", "pattern": f"^{TASK_NAME.pattern}$"})
    texts: Schema = {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}}
    rule: Schema = {
        "type": "object",
        "description": "names `task` when any keyword or pattern is found in its scopes",
        "additionalProperties": False,
        "required": ["task"],
        "anyOf": [{"required": ["keywords"]}, {"required": ["patterns"]}],
        "properties": {
            "task": {"description": "the task category this rule names"} | task_name,
            "keywords": {"description": "case-insensitive substrings"} | texts,
            "patterns": {"description": "Python regular expressions, as written"} | texts,
            "in": {
                "type": ["array", "null"],
                "description": "scopes: the last user turn and/or the system prompt",
                "default": list(SCOPES),
                "items": env_or({"enum": list(SCOPES)}),
            },
        },
    }
    tasks: Schema = {
        "type": OBJECT_OR_NULL,
        "description": "rules giving each request a task category (first match wins); "
        "omitted: the default rule set (docs/policies.md#task-rules)",
        "additionalProperties": False,
        "properties": {
            "default": {"description": "the task when no rule matches", "default": DEFAULT_TASK}
            | task_name,
            "scan_chars": {
                "type": "integer",
                "description": "each text is cut to its first and last scan_chars/2 characters",
                "default": SCAN_CHARS,
                "minimum": 64,
                "maximum": 10_000_000,
            },
            "rules": {
                "type": ["array", "null"],
                "description": "replaces the default rule set; [] = every request is `default`",
                "items": ref("taskRule"),
            },
        },
    }
    return {"tasks": tasks, "taskRule": rule}
