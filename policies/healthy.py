"""`health`: leave out targets that cannot serve now; prefer the ones that fail less and answer
sooner. As a filter it is soft: when every candidate is out it keeps them all (panic, see
docs/reliability.md), and the composite then puts the one that may recover soonest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from health.breaker import BreakerState
from health.signals import TargetHealth
from policies.params import Issue, in_range
from policies.types import HEALTH, Candidate, RequestFeatures, Score


@dataclass(frozen=True, slots=True)
class HealthParams:
    error_weight: float = 0.7  # score lost at a 100 % error rate
    slow_weight: float = 0.3  # score lost by a target infinitely slower than the fastest
    error_prior_calls: int = 5  # error rate is failures / (calls + this): one failure is not 100 %
    half_open_penalty: float = 0.5  # score lost by a target still on probation

    def check(self) -> list[Issue]:
        return (
            in_range("error_weight", self.error_weight, 0, 1)
            + in_range("slow_weight", self.slow_weight, 0, 1)
            + in_range("error_prior_calls", self.error_prior_calls, 0)
            + in_range("half_open_penalty", self.half_open_penalty, 0, 1)
        )


def recovery_s(h: TargetHealth) -> float:
    """How long until the target may take traffic again (misconfigured ones last)."""
    wait = max(h.open_for_s, h.throttled_for_s)
    return wait + 1e9 if h.misconfigured else wait


@dataclass(frozen=True, slots=True)
class Health:
    """Filter (soft): out if misconfigured, breaker open, or throttled.

    Scorer: 1 - error_weight·smoothed error rate - slow_weight·(1 - fastest TTFT / own TTFT),
    less `half_open_penalty` on probation, 0 for a target that cannot serve now. The error rate
    is the fleet's when the store has one, else this gateway's.
    """

    params: HealthParams = field(default_factory=HealthParams)
    name: str = "health"
    reads: frozenset[str] = frozenset({HEALTH})
    hard: bool = False

    def reject(
        self, request: RequestFeatures, candidate: Candidate, health: TargetHealth
    ) -> str | None:
        return health.why_unavailable()

    def error_rate(self, h: TargetHealth) -> float:
        if h.fleet_error_rate is not None:
            rate, calls = h.fleet_error_rate, h.fleet_window_calls
        else:
            rate, calls = h.error_rate, h.window_calls
        return rate * calls / (calls + self.params.error_prior_calls) if calls else 0.0

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        p = self.params
        ttfts = [h.ttft_ms_ewma for h in health if h.ttft_ms_ewma is not None and h.available]
        fastest = min(ttfts, default=None)
        out: list[Score] = []
        for h in health:
            why = h.why_unavailable()
            if why is not None:
                out.append(Score(0.0, why))
                continue
            err = self.error_rate(h)
            slow = 0.0
            if fastest is not None and h.ttft_ms_ewma is not None and h.ttft_ms_ewma > 0:
                slow = 1.0 - fastest / h.ttft_ms_ewma
            value = 1.0 - p.error_weight * err - p.slow_weight * slow
            if h.state is BreakerState.HALF_OPEN:
                value -= p.half_open_penalty
            note = f"err {err:.2f}" + (f" ttft {h.ttft_ms_ewma:.0f}ms" if h.ttft_ms_ewma else "")
            out.append(Score(max(0.0, value), note))
        return out
