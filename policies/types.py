"""The values every policy speaks: request features, candidate profiles, scores, decisions, and
the three plugin protocols (`Policy`, `Filter`, `Scorer`).

A `Policy` ranks candidates for one request. The built-ins are composites: `Filter`s drop
candidates, `Scorer`s give each survivor a score in [0, 1], the weighted mean orders them.
Everything here is pure and synchronous: policies do no I/O and never parse request bodies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from health.learned import Evidence
from health.signals import TargetHealth
from health.store import HealthSnapshot

DEFAULT_TASK = "chat"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NO_METADATA: Mapping[str, str] = MappingProxyType({})

# What a policy part reads, declared as `reads: frozenset[str]` on the part, so a request pays
# only for what its route's policy uses. Every composite reads each candidate's availability
# (`TargetHealth.why_unavailable`: unavailable targets go last); beyond that:
TASK = "task"  # `RequestFeatures.task`: the task rules classify the prompt (regexes)
REQUEST = "request"  # any other request feature: tokens, tools, images, max_cost...
HEALTH = "health"  # health beyond availability: error rates, latencies, in flight
CHANCE = "chance"  # may rank the same inputs differently: random draws, counters, learning
EVERYTHING = frozenset({TASK, REQUEST, HEALTH, CHANCE})


def reads(part: object) -> frozenset[str]:
    """What `part` declared it reads; a part that declares nothing - or a name outside
    EVERYTHING (a typo would otherwise starve it of what it reads) - may read everything."""
    declared = getattr(part, "reads", None)
    ok = isinstance(declared, frozenset) and declared <= EVERYTHING
    return declared if ok else EVERYTHING  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    """What a policy may know about one request; extracted once, policies never parse bodies.

    `max_cost` (US dollars for this request) and `quality_floor` (0..1) are per-request
    overrides of a route's defaults, from a header or the body's `metadata`.
    """

    operation: str  # "chat", "completions", "embeddings"
    estimated_input_tokens: int = 0
    max_tokens: int | None = None
    stream: bool = False
    tools: bool = False
    images: bool = False
    json_output: bool = False
    task: str = DEFAULT_TASK
    max_cost: float | None = None
    quality_floor: float | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: NO_METADATA)


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """One target's static profile, as configured."""

    target_id: str
    provider: str
    model: str
    context_window: int | None = None
    price: Price | None = None
    weight: float = 1.0
    capabilities: Mapping[str, float] = field(default_factory=dict)
    supports: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Ranked:
    """A candidate in the order the policy wants them tried, with the score that put it there
    and a short note for traces."""

    candidate: Candidate
    score: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class Excluded:
    """A candidate a filter removed for this request, and why (one line)."""

    candidate: Candidate
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """One routing decision: the order to try, and what was left out and why.

    `ranked` empty means no candidate may serve this request (a hard requirement such as tool
    support or `max_cost` excluded them all): the gateway answers 400 with `summary()`.
    """

    policy: str
    task: str
    ranked: tuple[Ranked, ...]
    excluded: tuple[Excluded, ...] = ()

    def summary(self) -> str:
        """Why nothing qualified, for the caller's error message."""
        reasons = "; ".join(f"{e.candidate.target_id}: {e.reason}" for e in self.excluded)
        return f"no candidate can serve this request ({reasons or 'no candidates'})"

    def explain(self) -> str:
        """One ASCII line for a trace attribute or the `x-turnout-route` header."""
        parts = [f"policy={self.policy}", f"task={self.task}"]
        parts.append(
            "ranked=" + ",".join(f"{r.candidate.target_id}:{r.score:.3f}" for r in self.ranked)
        )
        if self.excluded:
            parts.append(
                "excluded="
                + ",".join(f"{e.candidate.target_id}({e.by}: {e.reason})" for e in self.excluded)
            )
        line = " ".join(parts).encode("ascii", "replace").decode("ascii")
        return _CONTROL.sub(" ", line)  # CR, LF, tabs...: never let a plugin break a header


@dataclass(frozen=True, slots=True)
class Score:
    """One scorer's verdict on one candidate: a value in [0, 1] (higher is better)."""

    value: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """What happened on one target, for policies that learn (`Learner`).

    After an attempt: `success` (a provider failure or throttling is False; a caller error is
    not reported), its latency and estimated cost. A client's later feedback comes alone:
    `success` None and `feedback` in [0, 1].
    """

    target_id: str
    success: bool | None
    latency_s: float | None = None
    cost_usd: float | None = None
    feedback: float | None = None


class Policy(Protocol):
    """Ranks candidate targets for one request. Pure and synchronous: no I/O, no awaiting.

    A policy (like a filter or a scorer) may declare `reads: frozenset[str]` (TASK, REQUEST,
    HEALTH, CHANCE above): what it leaves out is not computed for it. Without the
    declaration it gets everything.

    Returns the candidates to try, best first; candidates it leaves out are not tried. An
    empty list means none may serve the request. Targets that are open or throttled should
    come last, the one that may recover soonest first: the gateway's panic attempt takes the
    first of the list when every candidate is out.
    """

    @property
    def name(self) -> str: ...

    def rank(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: HealthSnapshot,
    ) -> list[Ranked]: ...


class Filter(Protocol):
    """Says whether one candidate may serve a request: None, or the reason it may not.

    A `hard` filter is a requirement (tools, context window, budget): if it rejects every
    candidate, the request gets none. A soft one (health) never empties the list: if it would
    reject every candidate, all are kept (panic).
    """

    @property
    def name(self) -> str: ...

    @property
    def hard(self) -> bool: ...

    def reject(
        self, request: RequestFeatures, candidate: Candidate, health: TargetHealth
    ) -> str | None: ...


class Scorer(Protocol):
    """Scores every candidate for a request, each in [0, 1]; `health[i]` is `candidates[i]`'s."""

    @property
    def name(self) -> str: ...

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]: ...


@runtime_checkable
class Learner(Protocol):
    """A policy or part that learns from what happened (e.g. `adaptive`)."""

    def observe(self, observation: Observation) -> None: ...


class LearnedMemory(Protocol):
    """Where a learner keeps its evidence per target (`health.learned.Space` is one): the
    gateway hands each route's learners the health store's space for that route."""

    def evidence(self, target_id: str) -> Evidence: ...

    def add(self, target_id: str, reward: float, decay: float) -> None: ...


@runtime_checkable
class SharesLearning(Protocol):
    """A learner whose memory the gateway provides (so the fleet shares it, and it outlives
    reloads). Without `share`, a learner keeps its state to itself."""

    def share(self, memory: LearnedMemory) -> None: ...


def health_of(snapshot: HealthSnapshot, target_id: str) -> TargetHealth:
    """A target's view in the snapshot; a target with no view yet reads as healthy and idle."""
    return snapshot.get(target_id) or TargetHealth.unknown(target_id)
