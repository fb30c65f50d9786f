"""What the planner tests (`tests/unit/test_plan_*.py`) build: candidates, an `AttemptPlan`
on seeded randomness, an acquire callback that admits all but a denied set and logs its asks,
the outcomes attempts end with, and `Loop`: the real loop (`drive`) with a scripted attempt
on a manual clock, behind gates (`LoopGates`) with a real retry budget.

Pure: no sockets, no sleeping; `NOW` is the explicit time the tests decide at.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from gateway.resilience.budget import BudgetSettings, RetryBudget
from gateway.resilience.driving import drive
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Limits
from gateway.resilience.same_target import NO_SAME_TARGET, SameTarget
from health.breaker import Admission
from health.clock import ManualClock
from health.memory import MemoryStore
from health.outcome import CLIENT_GONE, Outcome, OutcomeKind, classify_status
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
    "Loop",
    "LoopGates",
    "StoreGates",
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


class LoopGates:
    """Health and budget as the planner sees them: a denied set, a real RetryBudget on the
    virtual clock, panic on or off, other requests' panic attempts."""

    def __init__(
        self,
        clock: ManualClock,
        denied: Iterable[str],
        budget: BudgetSettings,
        panic: bool,
        same: SameTarget = NO_SAME_TARGET,
    ) -> None:
        self.same = same
        self.denied = set(denied)
        self.budget = RetryBudget(budget, clock)
        self.panic = panic
        self.panicking: set[str] = set()
        self.forced: list[str] = []

    def acquire(self, target_id: str) -> Permit | None:
        return None if target_id in self.denied else Permit(target_id, probe=False)

    def force_acquire(self, target_id: str) -> Permit:
        self.forced.append(target_id)
        return Permit(target_id, probe=False)

    def admission(self, target_id: str) -> Admission:
        return Admission.DENY if target_id in self.denied else Admission.ALLOW

    def warmth(self, target_id: str) -> float:
        return 1.0

    def same_target(self, target_id: str) -> SameTarget:
        return self.same

    def spend(self) -> bool:
        return self.budget.try_spend()

    def panic_free(self, target_id: str) -> bool:
        return target_id not in self.panicking


class StoreGates:
    """The planner's gates over a real MemoryStore, as the exchange builds them, with a real
    retry budget on the same clock."""

    def __init__(
        self, store: MemoryStore, clock: ManualClock, budget: BudgetSettings | None = None
    ) -> None:
        self.store = store
        self.budget = RetryBudget(budget or BudgetSettings(), clock)
        self.panic = True

    def acquire(self, target_id: str) -> Permit | None:
        return self.store.acquire(target_id)

    def force_acquire(self, target_id: str) -> Permit:
        return self.store.force_acquire(target_id)

    def admission(self, target_id: str) -> Admission:
        return self.store.admission(target_id)

    def warmth(self, target_id: str) -> float:
        return self.store.warmth(target_id)

    def same_target(self, target_id: str) -> SameTarget:
        return SameTarget()  # the shipped defaults

    def spend(self) -> bool:
        return self.budget.try_spend()

    def panic_free(self, target_id: str) -> bool:
        return True


class Loop:
    """The real loop with a fake attempt: each attempt takes `attempt_s` of virtual time and
    ends as `script` says (one outcome per target, or a list taken in order); sleeps advance
    the same clock. Records when each attempt started."""

    def __init__(
        self,
        cands: list[Candidate],
        script: dict[str, Outcome | list[Outcome]],
        *,
        denied: Iterable[str] = (),
        context_errors: Iterable[str] = (),
        attempt_s: float = 0.2,
        budget: BudgetSettings | None = None,
        seed: int = 7,
        panic: bool = True,
        same: SameTarget = NO_SAME_TARGET,
        **limits: Any,
    ) -> None:
        self.clock = ManualClock(100.0)
        self.plan = AttemptPlan(cands, Limits(**limits), rng=random.Random(seed))
        settings = budget or BudgetSettings(ratio=0.2, min_retries=10, window_s=10.0)
        self.gates = LoopGates(self.clock, denied, settings, panic, same)
        self.script = script
        self.context_errors = set(context_errors)
        self.attempt_s = attempt_s
        self.starts: list[tuple[str, float]] = []  # (target, virtual time the attempt began)
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)

    async def attempt(self, permit: Permit, panic: bool) -> tuple[str, Outcome]:
        tid = permit.target_id
        self.starts.append((tid, self.clock.now()))
        self.clock.advance(self.attempt_s)
        scripted = self.script[tid]
        outcome = scripted.pop(0) if isinstance(scripted, list) else scripted
        context = outcome.kind is OutcomeKind.CALLER_ERROR and tid in self.context_errors
        self.plan.record(AttemptRecord(tid, outcome, panic=panic), context_exceeded=context)
        return tid, outcome

    @property
    def targets(self) -> list[str]:
        return [t for t, _ in self.starts]

    async def run(self) -> tuple[str, Outcome] | None:
        self.gates.budget.on_request()
        return await drive(self.plan, self.gates, self.attempt, self.clock.now, self.sleep)

    def assert_timeline(self) -> None:
        """Each attempt starts exactly when the previous one ended plus the wait before it."""
        for i in range(1, len(self.starts)):
            gap = self.starts[i][1] - (self.starts[i - 1][1] + self.attempt_s)
            assert gap == pytest.approx(self.waits[i - 1], abs=1e-9)
