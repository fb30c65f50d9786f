"""`capability`: hard requirements as a filter, the target's skill at the task as a score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from health.signals import TargetHealth
from policies.params import Issue, in_range
from policies.types import REQUEST, TASK, Candidate, RequestFeatures, Score

Requirement = Literal["tools", "vision", "json", "context"]
REQUIREMENTS: tuple[Requirement, ...] = ("tools", "vision", "json", "context")


@dataclass(frozen=True, slots=True)
class CapabilityParams:
    require: tuple[Requirement, ...] = REQUIREMENTS  # which hard requirements the filter checks
    unknown_score: float = 0.5  # the score of a target with no capability for the task

    def check(self) -> list[Issue]:
        return in_range("unknown_score", self.unknown_score, 0, 1)


def quality(candidate: Candidate, task: str, unknown: float) -> float:
    """The target's configured capability for `task`, in [0, 1]."""
    value = candidate.capabilities.get(task)
    if value is None or value != value:
        return unknown
    return min(1.0, max(0.0, value))


def context_needed(request: RequestFeatures) -> int:
    return request.estimated_input_tokens + (request.max_tokens or 0)


@dataclass(frozen=True, slots=True)
class Capability:
    """Filter (hard): a request with tools, images or JSON output goes only to targets whose
    `supports` lists `tools`, `vision`, `json`; one needing more tokens than a target's
    `context_window` (estimated input + max_tokens) never goes there. A target that declares
    no context window is assumed large enough; one that declares no `supports` supports none.

    Scorer: `capabilities[task]` of the target (`unknown_score` when it names no such task).
    """

    params: CapabilityParams = field(default_factory=CapabilityParams)
    name: str = "capability"
    reads: frozenset[str] = frozenset({TASK, REQUEST})
    hard: bool = True

    def reject(
        self, request: RequestFeatures, candidate: Candidate, health: TargetHealth
    ) -> str | None:
        need = self.params.require
        s = candidate.supports
        if request.tools and "tools" in need and "tools" not in s:
            return "no tool support"
        if request.images and "vision" in need and "vision" not in s:
            return "no vision support"
        if request.json_output and "json" in need and "json" not in s:
            return "no JSON mode"
        window = candidate.context_window
        if "context" in need and window is not None and context_needed(request) > window:
            return f"context window {window} < {context_needed(request)} tokens needed"
        return None

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        unknown = self.params.unknown_score
        return [
            Score(
                quality(c, request.task, unknown),
                f"{request.task} {quality(c, request.task, unknown):.2f}",
            )
            for c in candidates
        ]
