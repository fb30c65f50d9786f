"""Scorers from live load: `least_latency` (power of d choices over peak-EWMA latency, in-flight
aware) and `least_busy` (fewest requests in flight)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from health.signals import TargetHealth
from policies.params import Issue, in_range
from policies.types import CHANCE, HEALTH, Candidate, RequestFeatures, Score


@dataclass(frozen=True, slots=True)
class LeastLatencyParams:
    signal: Literal["ttft", "latency"] = "ttft"  # time to first token, or whole-answer latency
    choices: int = 2  # d in "power of d choices"; 1 is uniform random
    unknown_ms: float | None = None  # a target with no samples yet; None: median of the others

    def check(self) -> list[Issue]:
        return in_range("choices", self.choices, 1) + in_range("unknown_ms", self.unknown_ms, 0)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _ms(h: TargetHealth, signal: str) -> float | None:
    return h.ttft_ms_ewma if signal == "ttft" else h.latency_ms_ewma


@dataclass(frozen=True, slots=True)
class LeastLatency:
    """Load = peak-EWMA milliseconds * (in flight + 1), as Finagle's and Linkerd's balancers.

    d candidates are drawn at random among the available ones (all, if none is) and the one with
    the least load scores 1: random draws keep a fleet of gateways from herding onto the one
    fastest target. The others score 0.5 * best load / their load, so fallbacks stay ordered.
    """

    rng: random.Random
    params: LeastLatencyParams = field(default_factory=LeastLatencyParams)
    name: str = "least_latency"
    reads: frozenset[str] = frozenset({HEALTH, CHANCE})

    def loads(self, health: Sequence[TargetHealth]) -> list[float]:
        samples = [_ms(h, self.params.signal) for h in health]
        known = [s for s in samples if s is not None]
        prior = self.params.unknown_ms
        if prior is None:
            prior = _median(known) if known else 1.0
        return [
            max(s if s is not None else prior, 1e-3) * (h.in_flight + 1)
            for s, h in zip(samples, health, strict=True)
        ]

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        if not candidates:
            return []
        loads = self.loads(health)
        pool = [i for i, h in enumerate(health) if h.available] or list(range(len(health)))
        d = self.params.choices
        if d >= len(pool):
            drawn = pool
        elif d == 2:  # the usual case, without random.sample's overhead
            first = self.rng.randrange(len(pool))
            second = self.rng.randrange(len(pool) - 1)
            drawn = [pool[first], pool[second + (second >= first)]]
        else:
            drawn = self.rng.sample(pool, d)
        winner = min(drawn, key=lambda i: (loads[i], i))
        best = min(loads)
        return [
            Score(1.0 if i == winner else 0.5 * best / load, f"load {load:.0f}")
            for i, load in enumerate(loads)
        ]


@dataclass(frozen=True, slots=True)
class LeastBusy:
    """Fewest requests in flight from this gateway: (least + 1) / (own + 1)."""

    name: str = "least_busy"
    reads: frozenset[str] = frozenset({HEALTH})

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        least = min((h.in_flight for h in health), default=0)
        return [Score((least + 1) / (h.in_flight + 1), f"{h.in_flight} in flight") for h in health]
