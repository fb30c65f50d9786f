"""`cost_quality`: the cheapest target good enough for the task (RouteLLM / Martian style).

Quality is the target's configured `capabilities[task]`. Two rules:

- `floor` (default): targets whose quality meets the floor come first, cheapest first (scores
  0.5..1); the rest follow, best quality first (scores below 0.5), so a request whose task no
  target masters still goes to the strongest one.
- `tradeoff`: quality - cost_weight · cost / dearest candidate's cost, rescaled to [0, 1].

The floor is the request's `quality_floor`, else `floors[task]`, else `quality_floor`. As a
filter it enforces the budget: a target whose estimated cost exceeds the request's `max_cost`
(else the route's `max_cost`) is never tried; with a budget set, unpriced targets are out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from health.signals import TargetHealth
from policies.capability import quality
from policies.cost import DEFAULT_OUTPUT_TOKENS, cost_note, cost_scores, estimate_cost, over_budget
from policies.params import Issue, in_range
from policies.types import REQUEST, TASK, Candidate, RequestFeatures, Score

# The documented default: easy tasks accept a weaker model, hard ones need a strong one.
DEFAULT_FLOORS: Mapping[str, float] = MappingProxyType(
    {
        "chat": 0.6,
        "summarization": 0.6,
        "extraction": 0.7,
        "code": 0.8,
        "math": 0.8,
        "reasoning": 0.8,
    }
)


def _default_floors() -> Mapping[str, float]:
    return DEFAULT_FLOORS


@dataclass(frozen=True, slots=True)
class CostQualityParams:
    mode: Literal["floor", "tradeoff"] = "floor"
    quality_floor: float = 0.7  # for tasks not in `floors`
    floors: Mapping[str, float] = field(default_factory=_default_floors)  # replaces DEFAULT_FLOORS
    cost_weight: float = 0.5  # λ in `tradeoff` mode
    max_cost: float | None = None  # US dollars per request; a request's own max_cost wins
    output_tokens: int = DEFAULT_OUTPUT_TOKENS  # assumed when the request sets no max_tokens
    unknown_quality: float = 0.0  # quality of a target with no capability for the task

    def check(self) -> list[Issue]:
        issues = (
            in_range("quality_floor", self.quality_floor, 0, 1)
            + in_range("cost_weight", self.cost_weight, 0)
            + in_range("max_cost", self.max_cost, 0)
            + in_range("output_tokens", self.output_tokens, 0)
            + in_range("unknown_quality", self.unknown_quality, 0, 1)
        )
        for task, floor in self.floors.items():
            issues += in_range(f"floors.{task}", floor, 0, 1)
        return issues


@dataclass(frozen=True, slots=True)
class CostQuality:
    params: CostQualityParams = field(default_factory=CostQualityParams)
    name: str = "cost_quality"
    reads: frozenset[str] = frozenset({TASK, REQUEST})
    hard: bool = True

    def floor(self, request: RequestFeatures) -> float:
        if request.quality_floor is not None:
            return request.quality_floor
        return self.params.floors.get(request.task, self.params.quality_floor)

    def reject(
        self, request: RequestFeatures, candidate: Candidate, health: TargetHealth
    ) -> str | None:
        return over_budget(request, candidate, self.params.max_cost, self.params.output_tokens)

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        p = self.params
        qs = [quality(c, request.task, p.unknown_quality) for c in candidates]
        costs = [estimate_cost(request, c, p.output_tokens) for c in candidates]
        notes = [f"q {q:.2f} {cost_note(c)}" for q, c in zip(qs, costs, strict=True)]
        if p.mode == "tradeoff":
            dearest = max((c for c in costs if c is not None), default=0.0)
            # an unpriced target counts as the dearest one
            rel = [1.0 if c is None else (c / dearest if dearest > 0 else 0.0) for c in costs]
            lam = p.cost_weight
            return [
                Score((q - lam * r + lam) / (1.0 + lam), n)
                for q, r, n in zip(qs, rel, notes, strict=True)
            ]
        floor = self.floor(request)
        cheap = cost_scores(costs)
        return [
            Score(
                0.5 + 0.5 * s if q >= floor else 0.49 * q,
                n + ("" if q >= floor else f" < {floor:.2f}"),
            )
            for q, s, n in zip(qs, cheap, notes, strict=True)
        ]
