"""`adaptive`: a bandit that learns online which target gives the best reward (PickLLM style).

Thompson sampling over a Beta posterior per target: each request draws theta ~ Beta(a, b) for
every candidate, and theta is the score. After each attempt the gateway reports an
`Observation`; its reward r in [0, 1] updates that target's evidence: S <- g*S + r,
F <- g*F + (1 - r), and a = prior_successes + S, b = prior_failures + F. The decay g caps how
sure the bandit gets (S + F stays below 1 / (1 - g)), so a target that degrades loses its lead
within a few dozen requests and the others get tried again.

Reward: 0 for a failed attempt; for a success, 1 - latency_weight*min(1, latency / latency_ref)
- cost_weight*min(1, cost / cost_ref), blended with the client's feedback score when one comes
(`feedback_weight`). The evidence lives in a `LearnedMemory`: by default the policy's own; in
the gateway, the health store's space for the route (`share`), so it survives reloads and,
with the Redis fleet store, every replica learns from every replica's traffic.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from health.learned import Space
from health.signals import TargetHealth
from policies.params import Issue, in_range
from policies.types import CHANCE, Candidate, LearnedMemory, Observation, RequestFeatures, Score


@dataclass(frozen=True, slots=True)
class AdaptiveParams:
    latency_weight: float = 0.5  # reward lost by an answer as slow as latency_ref_s
    latency_ref_s: float = 10.0
    cost_weight: float = 0.0  # reward lost by an answer as dear as cost_ref_usd
    cost_ref_usd: float = 0.01
    feedback_weight: float = 0.5  # share of the client's score in a reward that has one
    decay: float = 0.98  # g: memory of about 1 / (1 - g) observations per target
    prior_successes: float = 1.0  # a of a target never seen
    prior_failures: float = 1.0  # b of a target never seen

    def check(self) -> list[Issue]:
        return (
            in_range("latency_weight", self.latency_weight, 0, 1)
            + in_range("latency_ref_s", self.latency_ref_s, 1e-6)
            + in_range("cost_weight", self.cost_weight, 0, 1)
            + in_range("cost_ref_usd", self.cost_ref_usd, 1e-12)
            + in_range("feedback_weight", self.feedback_weight, 0, 1)
            + in_range("decay", self.decay, 0.5, 1)
            + in_range("prior_successes", self.prior_successes, 1e-3)
            + in_range("prior_failures", self.prior_failures, 1e-3)
        )


@dataclass(frozen=True, slots=True)
class Posterior:
    successes: float
    failures: float

    @property
    def mean(self) -> float:
        return self.successes / (self.successes + self.failures)


@dataclass(slots=True)
class Adaptive:
    """A scorer that learns; `observe()` feeds it (see `policies.compose.observe`)."""

    rng: random.Random
    params: AdaptiveParams = field(default_factory=AdaptiveParams)
    name: str = "adaptive"
    reads: frozenset[str] = frozenset({CHANCE})
    memory: LearnedMemory = field(default_factory=Space)

    def share(self, memory: LearnedMemory) -> None:
        """Learn into (and from) `memory` from now on, e.g. the fleet's for this route."""
        self.memory = memory

    def posterior(self, target_id: str) -> Posterior:
        e = self.memory.evidence(target_id)
        p = self.params
        return Posterior(p.prior_successes + e.successes, p.prior_failures + e.failures)

    def reward(self, obs: Observation) -> float:
        p = self.params
        if obs.success is None:  # feedback alone
            return min(1.0, max(0.0, obs.feedback if obs.feedback is not None else 0.5))
        if not obs.success:
            value = 0.0
        else:
            value = 1.0
            if obs.latency_s is not None:
                value -= p.latency_weight * min(1.0, obs.latency_s / p.latency_ref_s)
            if obs.cost_usd is not None:
                value -= p.cost_weight * min(1.0, obs.cost_usd / p.cost_ref_usd)
        if obs.feedback is not None:
            value = (1 - p.feedback_weight) * value + p.feedback_weight * obs.feedback
        return min(1.0, max(0.0, value))

    def observe(self, observation: Observation) -> None:
        obs = observation
        if obs.success is None and obs.feedback is None:
            return
        self.memory.add(obs.target_id, self.reward(obs), self.params.decay)

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        out: list[Score] = []
        for c in candidates:
            post = self.posterior(c.target_id)
            theta = self.rng.betavariate(post.successes, post.failures)
            out.append(Score(theta, f"mean {post.mean:.2f}"))
        return out
