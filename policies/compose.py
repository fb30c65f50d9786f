"""A policy built from parts: filters, then weighted scorers, then a tie-break.

1. Each filter in turn removes the candidates it rejects. A hard filter may remove them all
   (the request then has no candidate: the gateway answers 400). A soft filter that would
   remove every remaining candidate removes none (panic).
2. Each scorer scores the survivors in [0, 1]; a candidate's score is the weighted mean.
3. Available targets come first, by score, ties broken by the route's order (`priority`) or
   at random (`random`). Targets that cannot serve now (open, throttled, misconfigured) go
   last, the one that may recover soonest first: the gateway's panic attempt takes it.

A scorer or filter that raises is skipped for that request (noted in the decision) rather
than failing it: a plugin bug must not take a route down.

A composite reads what its parts declare (`policies.types.reads`). One whose parts read
nothing but availability, with ties broken by order (`priority` itself), ranks the same way
whenever every candidate is available: that decision is made once per candidate list and kept.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

from health.signals import TargetHealth
from health.store import HealthSnapshot
from policies.healthy import recovery_s
from policies.types import (
    CHANCE,
    Candidate,
    Decision,
    Excluded,
    Filter,
    LearnedMemory,
    Learner,
    Observation,
    Policy,
    Ranked,
    RequestFeatures,
    Scorer,
    SharesLearning,
    health_of,
    reads,
)

TieBreak = Literal["priority", "random"]
_MAX_FIXED = 64
TIE_BREAKS: tuple[TieBreak, ...] = ("priority", "random")


@dataclass(frozen=True, slots=True)
class WeightedScorer:
    scorer: Scorer
    weight: float = 1.0


def _clamp(value: float) -> float:
    """Into [0, 1]; NaN is 0. A non-number raises TypeError (the scorer is then skipped)."""
    if value > 1.0:
        return 1.0
    return float(value) if value >= 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class Composite:
    name: str
    filters: tuple[Filter, ...] = ()
    scorers: tuple[WeightedScorer, ...] = ()
    tie_break: TieBreak = "priority"
    rng: random.Random = field(default_factory=random.Random, repr=False)
    learners: tuple[Learner, ...] = field(init=False, repr=False, compare=False)
    reads: frozenset[str] = field(init=False, repr=False, compare=False)
    # candidate ids -> the decision while all are available, for a composite that reads nothing
    _fixed: dict[tuple[str, ...], Decision] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        parts = (*self.filters, *(ws.scorer for ws in self.scorers))
        learners = tuple(p for p in parts if isinstance(p, Learner))
        read = frozenset().union(*(reads(p) for p in parts))
        if self.tie_break == "random":
            read |= {CHANCE}
        object.__setattr__(self, "learners", learners)  # frozen: set once, here
        object.__setattr__(self, "reads", read)

    def rank(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: HealthSnapshot,
    ) -> list[Ranked]:
        """The order alone: notes are left empty (see `decide` for the explained version)."""
        return list(self.decide(request, candidates, health, explain=False).ranked)

    def observe(self, observation: Observation) -> None:
        """Hand what happened to every part that learns."""
        for learner in self.learners:
            learner.observe(observation)

    def _filter(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        views: Sequence[TargetHealth],
        notes: list[list[str]],
    ) -> tuple[list[int], list[Excluded]]:
        kept = list(range(len(candidates)))
        excluded: list[Excluded] = []
        for f in self.filters:
            rejected: dict[int, str] = {}
            for i in kept:
                try:
                    why = f.reject(request, candidates[i], views[i])
                except Exception as exc:  # a plugin bug: the filter passes everything
                    notes[i].append(f"{f.name} failed: {type(exc).__name__}")
                    why = None
                if why is not None:
                    rejected[i] = why
            if not rejected:
                continue
            if len(rejected) == len(kept) and not f.hard:
                for i in kept:
                    notes[i].append(f"panic: {f.name}: {rejected[i]}")
                continue
            excluded += [Excluded(candidates[i], f.name, why) for i, why in rejected.items()]
            kept = [i for i in kept if i not in rejected]
            if not kept:
                break
        return kept, excluded

    def decide(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: HealthSnapshot,
        *,
        explain: bool = True,
    ) -> Decision:
        """The ranked candidates with their scores, and every exclusion with its reason; with
        `explain`, a note per candidate too (each scorer's value and note: costs a few µs)."""
        views = [health_of(health, c.target_id) for c in candidates]
        if self.reads or explain:
            return self._decide(request, candidates, views, explain)
        # Reads nothing but availability: while every candidate is available, the same order.
        for v in views:
            if v.why_unavailable() is not None:
                return self._decide(request, candidates, views, explain)
        key = tuple(c.target_id for c in candidates)
        fixed = self._fixed.get(key)
        if fixed is None:
            if len(self._fixed) >= _MAX_FIXED:  # candidate lists come from the config: few
                self._fixed.clear()
            fixed = self._fixed[key] = self._decide(request, candidates, views, explain)
        return fixed if fixed.task == request.task else replace(fixed, task=request.task)

    def _decide(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        views: Sequence[TargetHealth],
        explain: bool,
    ) -> Decision:
        notes: list[list[str]] = [[] for _ in candidates]
        kept, excluded = self._filter(request, candidates, views, notes)
        subset = [candidates[i] for i in kept]
        sub_views = [views[i] for i in kept]
        sub_notes = [notes[i] for i in kept]
        totals = [0.0] * len(kept)
        weight_sum = 0.0
        for ws in self.scorers if kept else ():
            name = ws.scorer.name
            try:
                scores = ws.scorer.score(request, subset, sub_views)
                if len(scores) != len(kept):
                    raise ValueError(f"{len(scores)} scores for {len(kept)} candidates")
                values = [_clamp(s.value) for s in scores]
            except Exception as exc:  # a plugin bug: this scorer sits this request out
                for n in sub_notes:
                    n.append(f"{name} failed: {type(exc).__name__}")
                continue
            weight_sum += ws.weight
            w = ws.weight
            for j, v in enumerate(values):
                totals[j] += w * v
            if explain:
                for n, v, s in zip(sub_notes, values, scores, strict=True):
                    n.append(f"{name}={v:.2f} ({s.note})" if s.note else f"{name}={v:.2f}")
        final = [t / weight_sum for t in totals] if weight_sum > 0 else totals
        down = [v.why_unavailable() for v in sub_views]
        random_ties = self.tie_break == "random"
        keys = [
            (
                down[j] is not None,
                recovery_s(sub_views[j]) if down[j] is not None else 0.0,
                -round(final[j], 9),
                self.rng.random() if random_ties else j,
            )
            for j in range(len(kept))
        ]
        ranked = []
        for j in sorted(range(len(kept)), key=keys.__getitem__):
            why = down[j]
            note = "; ".join([why, *sub_notes[j]] if why else sub_notes[j]) if explain else ""
            ranked.append(Ranked(subset[j], final[j], note))
        return Decision(self.name, request.task, tuple(ranked), tuple(excluded))


@runtime_checkable
class Explains(Protocol):
    """A policy that reports its exclusions itself (every `Composite` does)."""

    def decide(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: HealthSnapshot,
        *,
        explain: bool = True,
    ) -> Decision: ...


def decide(
    policy: Policy,
    request: RequestFeatures,
    candidates: Sequence[Candidate],
    health: HealthSnapshot,
    *,
    explain: bool = True,
) -> Decision:
    """The decision `policy` makes for this request, for any policy: one that only ranks has
    the candidates it left out reported as excluded by it. `explain=False` skips the notes
    (for requests nobody traces)."""
    if isinstance(policy, Composite | Explains):  # Composite first: the common, cheap check
        return policy.decide(request, candidates, health, explain=explain)
    ranked = policy.rank(request, candidates, health)
    chosen = {r.candidate.target_id for r in ranked}
    excluded = tuple(
        Excluded(c, policy.name, "left out by the policy")
        for c in candidates
        if c.target_id not in chosen
    )
    return Decision(policy.name, request.task, tuple(ranked), excluded)


def learning_parts(policy: Policy) -> list[SharesLearning]:
    """The parts of `policy` (or the policy itself) whose learned state the gateway keeps."""
    if isinstance(policy, Composite):
        return [p for p in policy.learners if isinstance(p, SharesLearning)]
    return [policy] if isinstance(policy, SharesLearning) else []


def share(policy: Policy, memory_for: Callable[[str], LearnedMemory]) -> list[str]:
    """Give each learning part of `policy` a memory of its own, `memory_for(suffix)`: the
    first part's suffix is "", the next ones "/2", "/3"... (two parts sharing one memory
    would count every outcome twice). Returns the suffixes used."""
    suffixes = []
    for i, part in enumerate(learning_parts(policy)):
        suffix = "" if i == 0 else f"/{i + 1}"
        part.share(memory_for(suffix))
        suffixes.append(suffix)
    return suffixes


def learner(policy: Policy) -> Callable[[Observation], None] | None:
    """What to tell when `policy` learns (its `observe`), or None if it does not."""
    if isinstance(policy, Composite) and not policy.learners:
        return None  # built-in policies compose parts; most of them have none that learns
    learn = getattr(policy, "observe", None)
    return learn if callable(learn) else None


def observe(policy: Policy, observation: Observation) -> None:
    """Report what happened to `policy` if it learns (cheap no-op otherwise)."""
    learn = learner(policy)
    if learn is not None:
        learn(observation)
