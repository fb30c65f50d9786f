"""What the planner tests (`tests/unit/test_plan_*.py`) build: candidates, an `AttemptPlan`
on seeded randomness, an acquire callback that admits all but a denied set and logs its asks,
and the outcomes attempts end with.

Pure: no sockets, no sleeping; `NOW` is the explicit time the tests decide at.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from gateway.resilience.plan import AttemptPlan, Limits
from health.outcome import CLIENT_GONE, classify_status
from health.outcome import DEADLINE as DEADLINE_OUT
from health.store import Permit
from policies.types import Candidate

OK = classify_status(200)
FAIL_503 = classify_status(503)
THROTTLED = classify_status(429, retry_after="5")
CREDENTIAL = classify_status(401)
BAD_REQUEST = classify_status(400)  # caller error
CONTEXT_400 = classify_status(400)  # a caller error the exchange recognised as context length
# CLIENT_GONE, and DEADLINE_OUT: what `health.outcome.blamed` makes of a timer that fired
# because the caller's deadline ran out mid-attempt.
__all__ = [
    "BAD_REQUEST",
    "CLIENT_GONE",
    "CONTEXT_400",
    "CREDENTIAL",
    "DEADLINE_OUT",
    "FAIL_503",
    "NOW",
    "OK",
    "THROTTLED",
    "Gate",
    "cand",
    "make_plan",
    "ranked",
]

NOW = 500.0


def cand(tid: str, context: int | None = None) -> Candidate:
    return Candidate(target_id=tid, provider=tid.split("@")[-1], model=tid, context_window=context)


def ranked(*ids: str) -> list[Candidate]:
    return [cand(t) for t in ids]


def make_plan(
    cands: Iterable[Candidate] = (),
    *,
    seed: int = 1,
    **limits: Any,
) -> AttemptPlan:
    cs = list(cands) or ranked("a", "b", "c", "d")
    return AttemptPlan(cs, Limits(**limits), rng=random.Random(seed))


class Gate:
    """An acquire callback: admits every target except the denied ones, and logs the asks."""

    def __init__(self, denied: Iterable[str] = (), now: Callable[[], float] = lambda: NOW):
        self.denied = set(denied)
        self.asked: list[str] = []
        self._now = now

    def __call__(self, target_id: str) -> Permit | None:
        self.asked.append(target_id)
        if target_id in self.denied:
            return None
        return Permit(target_id, probe=False)
