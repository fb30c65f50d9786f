"""The error a request gets when nothing answered: `gateway.pipeline.failure.failure`, a pure function."""

from __future__ import annotations

import dataclasses

from gateway.edge.errors import AllCandidatesFailed, GatewayTimeout, NoCandidateAvailable
from gateway.pipeline.failure import failure
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Limits, Stop
from health.breaker import BreakerState
from health.outcome import FailureReason, Outcome, OutcomeKind, classify_status
from health.signals import TargetHealth
from policies.types import Candidate

HEADER = "x-turnout-deadline-ms"


def plan(*records: AttemptRecord, stop: Stop | None = None) -> AttemptPlan:
    p = AttemptPlan([Candidate("a", "pa", "a"), Candidate("b", "pb", "b")], Limits())
    p.history.extend(records)
    p.stop = stop
    return p


def open_for(tid: str, seconds: float) -> TargetHealth:
    return dataclasses.replace(
        TargetHealth.unknown(tid), state=BreakerState.OPEN, open_for_s=seconds
    )


def never() -> dict[str, TargetHealth]:
    raise AssertionError("health is read only when nothing could be tried")


def test_nothing_admitted_is_503_with_the_soonest_recovery() -> None:
    err = failure(
        plan(stop=Stop.EXHAUSTED),
        lambda: {"a": open_for("a", 7.2), "b": open_for("b", 3.1)},
        HEADER,
    )
    assert isinstance(err, NoCandidateAvailable)
    assert err.headers["Retry-After"] == "4" and err.headers["x-turnout-attempts"] == "0"


def test_a_failed_panic_attempt_says_so() -> None:
    rec = AttemptRecord("a", classify_status(503), panic=True)
    err = failure(plan(rec, stop=Stop.EXHAUSTED), lambda: {"a": open_for("a", 1.0)}, HEADER)
    assert isinstance(err, NoCandidateAvailable) and "last-resort" in err.message


def test_every_attempt_named_in_a_502() -> None:
    recs = (AttemptRecord("a", classify_status(503)), AttemptRecord("b", classify_status(500)))
    err = failure(plan(*recs, stop=Stop.EXHAUSTED), never, HEADER)
    assert isinstance(err, AllCandidatesFailed) and err.status == 502
    assert err.message == "All 2 upstream attempts failed: a: status 503; b: status 500."


def test_budget_deadline_and_unanswered() -> None:
    rec = AttemptRecord("a", classify_status(503))
    budget = failure(plan(rec, stop=Stop.BUDGET), never, HEADER)
    assert budget.message == "1 upstream attempt failed (retry budget exhausted): a: status 503."
    late = failure(plan(rec, stop=Stop.DEADLINE), never, HEADER)
    assert isinstance(late, GatewayTimeout) and late.code == "deadline_exceeded"
    total = AttemptRecord("a", Outcome(OutcomeKind.PROVIDER_FAILURE, FailureReason.TOTAL_TIMEOUT))
    unanswered = failure(plan(total, stop=Stop.UNANSWERED), never, HEADER)
    assert unanswered.code == "upstream_timeout" and HEADER in unanswered.message
