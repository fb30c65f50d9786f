"""What a request will cost on each target: the estimate, the `lowest_cost` scorer and the
`budget` filter (a hard `max_cost`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from health.signals import TargetHealth
from policies.params import Issue, in_range
from policies.types import REQUEST, Candidate, RequestFeatures, Score

DEFAULT_OUTPUT_TOKENS = 256
UNKNOWN_NOTE = "price unknown"


def estimate_cost(
    request: RequestFeatures, candidate: Candidate, output_tokens: int = DEFAULT_OUTPUT_TOKENS
) -> float | None:
    """US dollars for this request on this target: estimated input tokens plus `max_tokens`
    (or `output_tokens` when the request sets none) at the target's price; None if unpriced."""
    price = candidate.price
    if price is None:
        return None
    out = request.max_tokens if request.max_tokens is not None else output_tokens
    return (
        request.estimated_input_tokens * price.input_per_mtok + out * price.output_per_mtok
    ) / 1e6


# Costs spread over orders of magnitude (a local model, a mini model, a frontier model), so
# they are compared on a log scale; a floor keeps free targets finite.
_COST_FLOOR_USD = 1e-7


def cost_scores(costs: Sequence[float | None]) -> list[float]:
    """Known costs mapped to [0.1, 1] on a log scale (cheapest 1); unknown ones score 0, so a
    target without a price ranks after every priced one."""
    logs = [None if c is None else math.log(max(c, _COST_FLOOR_USD)) for c in costs]
    known = [v for v in logs if v is not None]
    if not known:
        return [0.0] * len(costs)
    lo, hi = min(known), max(known)
    span = hi - lo
    return [0.0 if v is None else (1.0 if span <= 0 else 1.0 - 0.9 * (v - lo) / span) for v in logs]


def cost_note(cost: float | None) -> str:
    return UNKNOWN_NOTE if cost is None else f"${cost:.2g}"


@dataclass(frozen=True, slots=True)
class LowestCostParams:
    output_tokens: int = DEFAULT_OUTPUT_TOKENS  # assumed when the request sets no max_tokens

    def check(self) -> list[Issue]:
        return in_range("output_tokens", self.output_tokens, 0)


@dataclass(frozen=True, slots=True)
class LowestCost:
    """The cheapest estimated cost for this request first; unpriced targets last."""

    params: LowestCostParams = field(default_factory=LowestCostParams)
    name: str = "lowest_cost"
    reads: frozenset[str] = frozenset({REQUEST})

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        costs = [estimate_cost(request, c, self.params.output_tokens) for c in candidates]
        return [Score(s, cost_note(c)) for s, c in zip(cost_scores(costs), costs, strict=True)]


def over_budget(
    request: RequestFeatures, candidate: Candidate, max_cost: float | None, output_tokens: int
) -> str | None:
    """Why `candidate` breaks the budget (the request's `max_cost`, else `max_cost`), or None.
    With a budget set, an unpriced target is out: its cost cannot be bounded."""
    budget = request.max_cost if request.max_cost is not None else max_cost
    if budget is None:
        return None
    cost = estimate_cost(request, candidate, output_tokens)
    if cost is None:
        return f"{UNKNOWN_NOTE}, max_cost ${budget:.2g} set"
    if cost > budget:
        return f"estimated ${cost:.2g} > max_cost ${budget:.2g}"
    return None


@dataclass(frozen=True, slots=True)
class BudgetParams:
    max_cost: float | None = None  # US dollars per request; a request's own max_cost wins
    output_tokens: int = DEFAULT_OUTPUT_TOKENS

    def check(self) -> list[Issue]:
        return in_range("max_cost", self.max_cost, 0) + in_range(
            "output_tokens", self.output_tokens, 0
        )


@dataclass(frozen=True, slots=True)
class Budget:
    """A hard filter: targets whose estimated cost exceeds `max_cost` are never tried."""

    params: BudgetParams = field(default_factory=BudgetParams)
    name: str = "budget"
    reads: frozenset[str] = frozenset({REQUEST})
    hard: bool = True

    def reject(
        self, request: RequestFeatures, candidate: Candidate, health: TargetHealth
    ) -> str | None:
        return over_budget(request, candidate, self.params.max_cost, self.params.output_tokens)
