"""`priority`: the ordered fallback chain, with unavailable targets moved to the back.

Targets whose breaker is open or that are throttled go after every available one, least bad
first (the one that may recover soonest), so a route never loses all its candidates: when
everything is down, the gateway still has an order for its panic attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from health.signals import TargetHealth
from health.store import HealthSnapshot
from policies.types import Candidate, Ranked, RequestFeatures


@dataclass(frozen=True, slots=True)
class PriorityPolicy:
    name: str = "priority"

    def rank(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: HealthSnapshot,
    ) -> list[Ranked]:
        n = len(candidates)
        available: list[Ranked] = []
        benched: list[tuple[float, int, Ranked]] = []
        for i, cand in enumerate(candidates):
            h = health.get(cand.target_id) or TargetHealth.unknown(cand.target_id)
            if h.available:
                available.append(Ranked(cand, float(n - i)))
            else:
                wait_s = max(h.open_for_s, h.throttled_for_s)
                note = "throttled" if h.throttled_for_s > 0 else h.state.value
                benched.append((wait_s, i, Ranked(cand, 0.0, note)))
        benched.sort(key=lambda t: (t[0], t[1]))
        return available + [r for _, _, r in benched]
