"""Scorers that order by configuration alone: `priority`, `weighted`, `round_robin`."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from health.signals import TargetHealth
from policies.types import CHANCE, Candidate, RequestFeatures, Score


@dataclass(frozen=True, slots=True)
class Priority:
    """The order the route lists its candidates: the first scores 1, the last 1/n."""

    name: str = "priority"
    reads: frozenset[str] = frozenset()

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        n = len(candidates)
        return [Score((n - i) / n, f"#{i + 1}") for i in range(n)]


@dataclass(frozen=True, slots=True)
class Weighted:
    """A weighted random order from each target's static `weight` (Efraimidis-Spirakis keys
    u^(1/w), which are already in [0, 1]): a target with twice the weight comes first twice as
    often. Weight 0 scores 0: only a fallback, tried after every weighted target."""

    rng: random.Random
    name: str = "weighted"
    reads: frozenset[str] = frozenset({CHANCE})

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        out: list[Score] = []
        for c in candidates:
            u = self.rng.random()
            value = u ** (1.0 / c.weight) if c.weight > 0 else 0.0
            out.append(Score(value, f"w={c.weight:g}"))
        return out


@dataclass(slots=True)
class RoundRobin:
    """Each request starts one place further along the candidate list. The counter is the
    policy's own state: a reload (a new policy) starts again from the first candidate."""

    name: str = "round_robin"
    reads: frozenset[str] = frozenset({CHANCE})
    _turn: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        n = len(candidates)
        start = next(self._turn) % n if n else 0
        return [Score(1.0 - ((i - start) % n) / n, f"turn {start}") for i in range(n)]
