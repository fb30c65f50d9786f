"""The values every policy speaks: request features, candidate profiles, and the Policy protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from health.store import HealthSnapshot


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    """What a policy may know about one request; extracted once, policies never parse bodies."""

    operation: str  # "chat", "completions", "embeddings"
    estimated_input_tokens: int = 0
    max_tokens: int | None = None
    stream: bool = False
    tools: bool = False
    images: bool = False
    json_output: bool = False


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
    """A candidate in the order the policy wants them tried, with the score that put it there."""

    candidate: Candidate
    score: float
    note: str = ""


class Policy(Protocol):
    """Ranks candidate targets for one request. Pure and synchronous: no I/O, no awaiting."""

    @property
    def name(self) -> str: ...

    def rank(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: HealthSnapshot,
    ) -> list[Ranked]: ...
