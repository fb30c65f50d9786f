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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from policies.compose import TIE_BREAKS, Composite, TieBreak, WeightedScorer
from policies.params import Issue, decode_params, describe, join
from policies.plugins import PluginError, find_plugin, instantiate
from policies.registry import FILTERS, SCORERS, SHORTHANDS, Builtin, shorthand
from policies.tasks import TaskRules, decode_task_rules
from policies.types import Filter, Policy, Scorer

T = TypeVar("T")
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


Make = Callable[[random.Random], T]


class PolicyBuildError(Exception):
    """A spec that was provisioned without problems failed to build again (a plugin whose
    constructor is not repeatable): raised, never replaced by another policy."""


@dataclass(frozen=True, slots=True)
class PolicyFactory:
    """Fresh policies of one route's spec, decoded once (`provision_policy`). Policies hold
    state (a round-robin turn, the memory learning parts are given), so each runtime and each
    reload takes its own."""

    name: str
    make: Make[Policy]

    def __call__(self, rng: random.Random | None = None) -> Policy:
        return self.make(rng or random.Random())


def _builtin(entry: Builtin, raw_params: object, path: str) -> tuple[Make[Any] | None, list[Issue]]:
    params, issues = decode_params(entry.params, raw_params, join(path, "params"))
    return (None, issues) if params is None else (partial(entry.make, params), [])


def _plugin(
    name: str, raw_params: object, path: str, name_path: str, kind: str, known: Mapping[str, Any]
) -> tuple[Make[Any] | None, Any, list[Issue]]:
    """A maker of plugin `name`, and one instance built as its check."""
    try:
        cls = find_plugin(name)
    except PluginError as exc:
        return None, None, [(name_path, str(exc))]
    if cls is None:
        names = ", ".join(sorted(known))
        return (
            None,
            None,
            [(name_path, f"unknown {kind} {name!r} (known: {names}; or module:Class)")],
        )
    trial, issues = instantiate(cls, name, raw_params, path)
    if trial is None:
        return None, None, issues

    def make(rng: random.Random) -> Any:
        obj, problems = instantiate(cls, name, raw_params, path)
        if obj is None:
            raise PolicyBuildError("; ".join(f"{p}: {m}" for p, m in problems))
        return obj

    return make, trial, []


def _filter(raw: object, path: str) -> tuple[Make[Filter] | None, list[Issue]]:
    name, params, name_path, issues = _split(raw, path, ("name", "params"))
    if issues:
        return None, issues
    if name in FILTERS:
        return _builtin(FILTERS[name], params, path)
    make, obj, issues = _plugin(name, params, path, name_path, "filter", FILTERS)
    if obj is not None and not (callable(getattr(obj, "reject", None)) and hasattr(obj, "hard")):
        return None, [(name_path, f"{name!r} is not a filter (needs reject() and hard)")]
    return make, issues


def _weight(raw: object) -> tuple[float, list[str]]:
    if isinstance(raw, str):  # `${WEIGHT}` expands to a string; a number written as one is fine
        with contextlib.suppress(ValueError):
            raw = float(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 1.0, [f"expected a number, got {describe(raw)}"]
    if not math.isfinite(raw) or raw < 0:
        return 1.0, ["must be >= 0"]
    return float(raw), []


def _scorer(raw: object, path: str) -> tuple[Make[WeightedScorer] | None, list[Issue]]:
    name, params, name_path, issues = _split(raw, path, ("name", "weight", "params"))
    weight, more = _weight(raw.get("weight", 1.0) if isinstance(raw, Mapping) else 1.0)
    issues += [(join(path, "weight"), msg) for msg in more]
    if issues:
        return None, issues
    make: Make[Scorer] | None
    if name in SCORERS:
        make, issues = _builtin(SCORERS[name], params, path)
    else:
        make, obj, issues = _plugin(name, params, path, name_path, "scorer", SCORERS)
        if obj is not None and not callable(getattr(obj, "score", None)):
            return None, [(name_path, f"{name!r} is not a scorer (needs score())")]
    if make is None:
        return None, issues
    scorer = make
    return (lambda rng: WeightedScorer(scorer(rng), weight)), []


def _items(raw: Mapping[str, Any], key: str, path: str) -> tuple[list[Any], list[Issue]]:
    value = raw.get(key)
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [], [(join(path, key), f"expected a list, got {describe(value)}")]
    return value, []


def _composite(raw: Mapping[str, Any], path: str) -> tuple[Make[Policy] | None, list[Issue]]:
    issues = _unknown_keys(raw, COMPOSITE_KEYS, path)
    filters_raw, more = _items(raw, "filters", path)
    issues += more
    scorers_raw, more = _items(raw, "scorers", path)
    issues += more
    filters: list[Make[Filter]] = []
    for i, item in enumerate(filters_raw):
        f, more = _filter(item, join(join(path, "filters"), i))
        issues += more
        if f is not None:
            filters.append(f)
    scorers: list[Make[WeightedScorer]] = []
    for i, item in enumerate(scorers_raw):
        s, more = _scorer(item, join(join(path, "scorers"), i))
        issues += more
        if s is not None:
            scorers.append(s)
    tie = raw.get("tie_break", "priority")
    if tie not in TIE_BREAKS:
        issues.append((join(path, "tie_break"), f"expected one of {', '.join(TIE_BREAKS)}"))
    if issues:
        return None, issues
    tie_break: TieBreak = "random" if tie == "random" else "priority"

    def make(rng: random.Random) -> Policy:
        parts = tuple(s(rng) for s in scorers)
        name = "+".join(s.scorer.name for s in parts) or "filters"
        return Composite(name, tuple(f(rng) for f in filters), parts, tie_break, rng)

    return make, []


def _named(
    name: str, raw_params: object, path: str, name_path: str
) -> tuple[Make[Policy] | None, list[Issue]]:
    if name in SHORTHANDS:
        params, issues = decode_params(SCORERS[name].params, raw_params, join(path, "params"))
        return (None, issues) if params is None else (partial(shorthand, name, params), [])
    make, obj, issues = _plugin(name, raw_params, path, name_path, "policy", SHORTHANDS)
    if make is None:
        return None, issues
    if callable(getattr(obj, "rank", None)):
        return make, []
    if callable(getattr(obj, "score", None)):  # a lone scorer is a policy of its own
        scorer, label = make, str(getattr(obj, "name", name))
        return (
            lambda rng: Composite(label, (), (WeightedScorer(scorer(rng)),), "priority", rng)
        ), []
    return None, [(name_path, f"{name!r} is not a policy (needs rank() or score())")]


def _maker(raw: object, path: str) -> tuple[Make[Policy] | None, list[Issue]]:
    if raw is None:
        raw = DEFAULT_POLICY
    if isinstance(raw, str):
        return _named(raw, None, path, path)
    if isinstance(raw, Mapping):
        if "name" in raw:
            name, params, name_path, issues = _split(raw, path, ("name", "params"))
            if issues:
                return None, issues
            return _named(name, params, path, name_path)
        if any(k in COMPOSITE_KEYS for k in raw):
            return _composite(raw, path)
    return None, [
        (path, "expected a policy name, {name, params}, or {filters, scorers, tie_break}")
    ]


def provision_policy(raw: object, path: str) -> tuple[PolicyFactory | None, list[Issue]]:
    """A factory of the policy a route's `policy:` value describes (None: the default,
    `priority`), checked by building one; or None and every problem as (path, message)."""
    make, issues = _maker(raw, path)
    if make is None:
        return None, issues
    try:
        trial = make(random.Random())
    except Exception as exc:  # a plugin's constructor runs arbitrary code
        return None, [(path, f"cannot build the policy: {type(exc).__name__}: {exc}")]
    return PolicyFactory(str(trial.name), make), []


def build_policy(
    raw: object, path: str, *, rng: random.Random | None = None
) -> tuple[Policy | None, list[Issue]]:
    """The policy a route's `policy:` value describes (None: the default, `priority`), or None
    and every problem as (path, message). `rng` drives random choices (tests inject one)."""
    factory, issues = provision_policy(raw, path)
    return (None, issues) if factory is None else (factory(rng), [])


DEFAULT_POLICY_FACTORY = PolicyFactory(DEFAULT_POLICY, partial(shorthand, DEFAULT_POLICY, None))


def build_task_rules(raw: object, path: str) -> tuple[TaskRules | None, list[Issue]]:
    """Task-category rules from YAML (None: the documented default set); see policies.tasks."""
    return decode_task_rules(raw, path)
