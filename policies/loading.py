"""Policies from YAML, checked at load time: every problem comes back with its path.

A policy spec is one of

- a name: a built-in shorthand (`priority`, `cost_quality`, ... see `policies.registry`), a
  plugin `module:Class`, or an entry-point name from the group `turnout.policies`;
- `{name: ..., params: {...}}`: the same, with typed params;
- `{filters: [...], scorers: [...], tie_break: priority|random}`: a composite, where a filter
  is a name or `{name, params}` and a scorer a name or `{name, weight, params}`.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Mapping
from typing import Any

from policies.compose import TIE_BREAKS, Composite, TieBreak, WeightedScorer
from policies.params import Issue, decode_params, describe, join
from policies.plugins import PluginError, find_plugin, instantiate
from policies.registry import FILTERS, SCORERS, SHORTHANDS, Builtin, shorthand
from policies.tasks import TaskRules, decode_task_rules
from policies.types import Filter, Policy, Scorer

DEFAULT_POLICY = "priority"
COMPOSITE_KEYS = ("filters", "scorers", "tie_break")


def _unknown_keys(raw: Mapping[Any, Any], known: tuple[str, ...], path: str) -> list[Issue]:
    return [
        (join(path, str(k)), f"unknown key (known keys: {', '.join(known)})")
        for k in raw
        if k not in known
    ]


def _split(raw: object, path: str, known: tuple[str, ...]) -> tuple[str, Any, str, list[Issue]]:
    """(name, raw params, path of the name, issues) of a `name` or `{name, ...}` item."""
    if isinstance(raw, str):
        return raw, None, path, []
    if not isinstance(raw, Mapping):
        return "", None, path, [(path, f"expected a name or a mapping, got {describe(raw)}")]
    issues = _unknown_keys(raw, known, path)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        issues.append((join(path, "name"), "required: a policy name or module:Class"))
        name = ""
    return name, raw.get("params"), join(path, "name"), issues


def _builtin(
    entry: Builtin, raw_params: object, path: str, rng: random.Random
) -> tuple[Any, list[Issue]]:
    params, issues = decode_params(entry.params, raw_params, join(path, "params"))
    return (None, issues) if params is None else (entry.make(params, rng), [])


def _plugin(
    name: str, raw_params: object, path: str, name_path: str, kind: str, known: Mapping[str, Any]
) -> tuple[Any, list[Issue]]:
    try:
        cls = find_plugin(name)
    except PluginError as exc:
        return None, [(name_path, str(exc))]
    if cls is None:
        names = ", ".join(sorted(known))
        return None, [(name_path, f"unknown {kind} {name!r} (known: {names}; or module:Class)")]
    return instantiate(cls, name, raw_params, path)


def _filter(raw: object, path: str, rng: random.Random) -> tuple[Filter | None, list[Issue]]:
    name, params, name_path, issues = _split(raw, path, ("name", "params"))
    if issues:
        return None, issues
    if name in FILTERS:
        return _builtin(FILTERS[name], params, path, rng)
    obj, issues = _plugin(name, params, path, name_path, "filter", FILTERS)
    if obj is not None and not (callable(getattr(obj, "reject", None)) and hasattr(obj, "hard")):
        return None, [(name_path, f"{name!r} is not a filter (needs reject() and hard)")]
    return obj, issues


def _weight(raw: object) -> tuple[float, list[str]]:
    if isinstance(raw, str):  # `${WEIGHT}` expands to a string; a number written as one is fine
        with contextlib.suppress(ValueError):
            raw = float(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 1.0, [f"expected a number, got {describe(raw)}"]
    if not math.isfinite(raw) or raw < 0:
        return 1.0, ["must be >= 0"]
    return float(raw), []


def _scorer(
    raw: object, path: str, rng: random.Random
) -> tuple[WeightedScorer | None, list[Issue]]:
    name, params, name_path, issues = _split(raw, path, ("name", "weight", "params"))
    weight, more = _weight(raw.get("weight", 1.0) if isinstance(raw, Mapping) else 1.0)
    issues += [(join(path, "weight"), msg) for msg in more]
    if issues:
        return None, issues
    scorer: Scorer | None
    if name in SCORERS:
        scorer, issues = _builtin(SCORERS[name], params, path, rng)
    else:
        scorer, issues = _plugin(name, params, path, name_path, "scorer", SCORERS)
        if scorer is not None and not callable(getattr(scorer, "score", None)):
            return None, [(name_path, f"{name!r} is not a scorer (needs score())")]
    return (None, issues) if scorer is None else (WeightedScorer(scorer, weight), [])


def _items(raw: Mapping[str, Any], key: str, path: str) -> tuple[list[Any], list[Issue]]:
    value = raw.get(key)
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [], [(join(path, key), f"expected a list, got {describe(value)}")]
    return value, []


def _composite(
    raw: Mapping[str, Any], path: str, rng: random.Random
) -> tuple[Policy | None, list[Issue]]:
    issues = _unknown_keys(raw, COMPOSITE_KEYS, path)
    filters_raw, more = _items(raw, "filters", path)
    issues += more
    scorers_raw, more = _items(raw, "scorers", path)
    issues += more
    filters: list[Filter] = []
    for i, item in enumerate(filters_raw):
        f, more = _filter(item, join(join(path, "filters"), i), rng)
        issues += more
        if f is not None:
            filters.append(f)
    scorers: list[WeightedScorer] = []
    for i, item in enumerate(scorers_raw):
        s, more = _scorer(item, join(join(path, "scorers"), i), rng)
        issues += more
        if s is not None:
            scorers.append(s)
    tie = raw.get("tie_break", "priority")
    if tie not in TIE_BREAKS:
        issues.append((join(path, "tie_break"), f"expected one of {', '.join(TIE_BREAKS)}"))
    if issues:
        return None, issues
    tie_break: TieBreak = "random" if tie == "random" else "priority"
    name = "+".join(s.scorer.name for s in scorers) or "filters"
    return Composite(name, tuple(filters), tuple(scorers), tie_break, rng), []


def _named(
    name: str, raw_params: object, path: str, name_path: str, rng: random.Random
) -> tuple[Policy | None, list[Issue]]:
    if name in SHORTHANDS:
        params, issues = decode_params(SCORERS[name].params, raw_params, join(path, "params"))
        return (None, issues) if params is None else (shorthand(name, params, rng), [])
    obj, issues = _plugin(name, raw_params, path, name_path, "policy", SHORTHANDS)
    if obj is None:
        return None, issues
    if callable(getattr(obj, "rank", None)):
        return obj, []
    if callable(getattr(obj, "score", None)):  # a lone scorer is a policy of its own
        return Composite(
            str(getattr(obj, "name", name)), (), (WeightedScorer(obj),), "priority", rng
        ), []
    return None, [(name_path, f"{name!r} is not a policy (needs rank() or score())")]


def build_policy(
    raw: object, path: str, *, rng: random.Random | None = None
) -> tuple[Policy | None, list[Issue]]:
    """The policy a route's `policy:` value describes (None: the default, `priority`), or None
    and every problem as (path, message). `rng` drives random choices (tests inject one)."""
    rng = rng or random.Random()
    if raw is None:
        raw = DEFAULT_POLICY
    if isinstance(raw, str):
        return _named(raw, None, path, path, rng)
    if isinstance(raw, Mapping):
        if "name" in raw:
            name, params, name_path, issues = _split(raw, path, ("name", "params"))
            if issues:
                return None, issues
            return _named(name, params, path, name_path, rng)
        if any(k in COMPOSITE_KEYS for k in raw):
            return _composite(raw, path, rng)
    return None, [
        (path, "expected a policy name, {name, params}, or {filters, scorers, tie_break}")
    ]


def build_task_rules(raw: object, path: str) -> tuple[TaskRules | None, list[Issue]]:
    """Task-category rules from YAML (None: the documented default set); see policies.tasks."""
    return decode_task_rules(raw, path)
