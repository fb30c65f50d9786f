"""The built-in policy parts, readable at a glance.

A route's `policy: <name>` is shorthand for a composite (`policies.compose`): the filters
listed in SHORTHANDS, then the scorer of that name. `{name, params}` hands the params to the
parts of that name. Third-party parts are loaded by `policies.loading`, never added here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from policies.adaptive import Adaptive, AdaptiveParams
from policies.capability import Capability, CapabilityParams
from policies.compose import Composite, WeightedScorer
from policies.cost import Budget, BudgetParams, LowestCost, LowestCostParams
from policies.cost_quality import CostQuality, CostQualityParams
from policies.healthy import Health, HealthParams
from policies.latency import LeastBusy, LeastLatency, LeastLatencyParams
from policies.ordering import Priority, RoundRobin, Weighted
from policies.params import NoParams
from policies.types import Filter, Policy, Scorer


@dataclass(frozen=True, slots=True)
class Builtin:
    """One built-in part: the dataclass its params decode into, and how to build it."""

    params: type[Any]
    make: Callable[[Any, random.Random], Any]


FILTERS: Mapping[str, Builtin] = MappingProxyType(
    {
        "capability": Builtin(CapabilityParams, lambda p, rng: Capability(p)),
        "health": Builtin(HealthParams, lambda p, rng: Health(p)),
        "budget": Builtin(BudgetParams, lambda p, rng: Budget(p)),
        "cost_quality": Builtin(CostQualityParams, lambda p, rng: CostQuality(p)),
    }
)

SCORERS: Mapping[str, Builtin] = MappingProxyType(
    {
        "priority": Builtin(NoParams, lambda p, rng: Priority()),
        "weighted": Builtin(NoParams, lambda p, rng: Weighted(rng)),
        "round_robin": Builtin(NoParams, lambda p, rng: RoundRobin()),
        "least_latency": Builtin(LeastLatencyParams, lambda p, rng: LeastLatency(rng, p)),
        "least_busy": Builtin(NoParams, lambda p, rng: LeastBusy()),
        "lowest_cost": Builtin(LowestCostParams, lambda p, rng: LowestCost(p)),
        "capability": Builtin(CapabilityParams, lambda p, rng: Capability(p)),
        "health": Builtin(HealthParams, lambda p, rng: Health(p)),
        "cost_quality": Builtin(CostQualityParams, lambda p, rng: CostQuality(p)),
        "adaptive": Builtin(AdaptiveParams, lambda p, rng: Adaptive(rng, p)),
    }
)

# shorthand name -> the filters it applies before scoring with the scorer of the same name
SHORTHANDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "priority": (),
        "weighted": (),
        "round_robin": (),
        "least_latency": (),
        "least_busy": (),
        "lowest_cost": (),
        "capability": ("capability",),
        "health": ("health",),
        "cost_quality": ("capability", "health", "cost_quality"),
        "adaptive": (),
    }
)

BUILTIN = SHORTHANDS  # the names a route's `policy:` may use without a plugin

_RNG = random.Random()


def shorthand(name: str, params: Any | None = None, rng: random.Random | None = None) -> Composite:
    """The composite `policy: name` stands for; `params` (already decoded, of the scorer's
    params type) go to the parts called `name`, the others use their defaults."""
    rng = rng or _RNG
    entry = SCORERS[name]
    own = params if params is not None else entry.params()
    filters: list[Filter] = []
    for f in SHORTHANDS[name]:
        fe = FILTERS[f]
        filters.append(fe.make(own if f == name else fe.params(), rng))
    scorer: Scorer = entry.make(own, rng)
    return Composite(name, tuple(filters), (WeightedScorer(scorer),), "priority", rng)


def make_policy(name: str) -> Policy:
    """A built-in policy by name with default params; KeyError names the known ones."""
    if name not in SHORTHANDS:
        known = ", ".join(sorted(SHORTHANDS))
        raise KeyError(f"unknown policy {name!r} (known: {known})")
    return shorthand(name)
