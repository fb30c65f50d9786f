"""The dry run of the attempt loop (`POST /admin/route`'s `would_try`): the same planner, on
health as it is now, nothing taken, every attempt failing with a 503."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.resilience.plan import ADMITS, AttemptPlan, AttemptRecord, Limits
from gateway.resilience.same_target import NO_SAME_TARGET, SameTarget
from health.breaker import Admission
from health.outcome import FailureReason, Outcome, OutcomeKind
from health.store import Permit
from policies.types import Candidate

_DRY_FAILURE = Outcome(OutcomeKind.PROVIDER_FAILURE, FailureReason.STATUS, status=503)


@dataclass(frozen=True, slots=True)
class _DryGates:
    """Health as it is now, nothing taken; a budget that never runs out."""

    peek: Callable[[str], Admission]
    panic: bool
    retries: Callable[[str], SameTarget]

    def acquire(self, target_id: str) -> Permit | None:
        verdict = self.peek(target_id)
        return None if verdict not in ADMITS else Permit(target_id, verdict is Admission.PROBE)

    def force_acquire(self, target_id: str) -> Permit:
        return Permit(target_id, False)

    def admission(self, target_id: str) -> Admission:
        return self.peek(target_id)

    def warmth(self, target_id: str) -> float:
        return 1.0  # the order the loop would take, not a draw of the slow-start ramp

    def same_target(self, target_id: str) -> SameTarget:
        return self.retries(target_id)

    def spend(self) -> bool:
        return True

    def panic_free(self, target_id: str) -> bool:
        return True


def would_try(
    ranked: Sequence[Candidate],
    max_attempts: int,
    peek: Callable[[str], Admission],
    panic: bool,
    retries: Callable[[str], SameTarget] = lambda _tid: NO_SAME_TARGET,
) -> list[str]:
    """The targets the loop would try, in order, if every attempt failed with a 503 (the dry
    run): a target appears again for each same-target retry it would get."""
    plan = AttemptPlan(ranked, Limits(max_attempts=max_attempts))
    gates = _DryGates(peek, panic, retries)
    tried: list[str] = []
    while (picked := plan.pick(gates)) is not None:
        tried.append(picked[0].target_id)
        plan.record(AttemptRecord(picked[0].target_id, _DRY_FAILURE, panic=picked[1]))
        if plan.after(0.0, gates) is not None:
            break
    return tried
