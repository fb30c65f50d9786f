"""The attempt plan (`gateway.resilience.plan.AttemptPlan`) step by step: which target comes next (rank
order, denied targets skipped, the panic target), when `decide` stops and why (success, caller
error, max attempts, deadline, budget, client gone, exhausted), and the context-length fallback
to strictly larger windows.

No sockets, no sleeping: time is an explicit `now`, randomness is seeded.
"""

from __future__ import annotations

import pytest

from gateway.resilience.plan import AttemptPlan, AttemptRecord, Limits, Stop
from health.outcome import FailureReason, Outcome, OutcomeKind
from tests.unit.planning import (
    BAD_REQUEST,
    CLIENT_GONE,
    CONTEXT_400,
    CREDENTIAL,
    DEADLINE_OUT,
    FAIL_503,
    NOW,
    OK,
    THROTTLED,
    Gate,
    cand,
    make_plan,
    ranked,
)


class Budget:
    """A budget callback that counts how often it is consulted."""

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.ok


def attempt(plan: AttemptPlan, outcome: Outcome, gate: Gate | None = None) -> str:
    """Take the next admitted target and record `outcome` for it; returns the target id."""
    permit = plan.next_target(gate or Gate())
    assert permit is not None
    plan.record(AttemptRecord(permit.target_id, outcome))
    return permit.target_id


# -- targets -----------------------------------------------------------------------------------


def test_each_attempt_goes_to_a_different_target_in_rank_order() -> None:
    plan = make_plan(max_attempts=10)
    tried = [attempt(plan, FAIL_503) for _ in range(4)]
    assert tried == ["a", "b", "c", "d"]
    assert plan.tried == {"a", "b", "c", "d"}
    assert plan.remaining() == []
    assert plan.next_target(Gate()) is None


def test_denied_target_is_skipped_for_the_rest_of_the_request() -> None:
    plan = make_plan(max_attempts=10)
    gate = Gate(denied={"b"})
    permit = plan.next_target(gate)
    assert permit is not None and permit.target_id == "a"
    plan.record(AttemptRecord("a", FAIL_503))
    permit = plan.next_target(gate)
    assert permit is not None and permit.target_id == "c"  # b denied, c tried next
    assert plan.skipped == {"b"}
    assert gate.asked == ["a", "b", "c"]
    plan.record(AttemptRecord("c", FAIL_503))
    gate.denied.clear()  # b recovers, but it was denied for this request already
    permit = plan.next_target(gate)
    assert permit is not None and permit.target_id == "d"
    assert gate.asked == ["a", "b", "c", "d"]  # b is not even asked again
    assert [c.target_id for c in plan.remaining()] == ["d"]  # admitted, not yet recorded
    plan.record(AttemptRecord("d", FAIL_503))
    assert plan.remaining() == []


def test_next_target_is_none_when_nothing_is_admitted() -> None:
    plan = make_plan()
    gate = Gate(denied={"a", "b", "c", "d"})
    assert plan.next_target(gate) is None
    assert gate.asked == ["a", "b", "c", "d"]
    assert plan.skipped == {"a", "b", "c", "d"}
    assert plan.remaining() == []


def test_panic_target_is_the_first_ranked_only_before_any_attempt() -> None:
    plan = make_plan()
    assert plan.next_target(Gate(denied={"a", "b", "c", "d"})) is None
    assert plan.panic_target() == "a"  # all out: the least-bad, even though it was denied
    plan.record(AttemptRecord("a", FAIL_503, panic=True))
    assert plan.panic_target() is None
    assert plan.decide(NOW, Budget()) is Stop.EXHAUSTED

    assert AttemptPlan([], Limits()).panic_target() is None
    other = make_plan()
    attempt(other, FAIL_503)
    assert other.panic_target() is None  # a normal attempt happened: no panic


# -- decide ------------------------------------------------------------------------------------


def test_success_stops_with_success() -> None:
    plan = make_plan()
    attempt(plan, OK)
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.SUCCESS
    assert budget.calls == 0


def test_caller_error_passes_through_without_retry() -> None:
    plan = make_plan()
    attempt(plan, BAD_REQUEST)
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.PASS_THROUGH
    assert budget.calls == 0


@pytest.mark.parametrize("outcome", [FAIL_503, THROTTLED, CREDENTIAL], ids=lambda o: o.kind.value)
def test_fail_over_outcomes_go_on_while_everything_remains(outcome: Outcome) -> None:
    plan = make_plan(deadline=NOW + 10.0)
    attempt(plan, outcome)
    budget = Budget()
    assert plan.decide(NOW, budget) is None
    assert budget.calls == 1  # going on spends one retry
    assert plan.stop is None


def test_max_attempts_at_the_limit() -> None:
    plan = make_plan(max_attempts=3)
    budget = Budget()
    for _ in range(2):
        attempt(plan, FAIL_503)
        assert plan.decide(NOW, budget) is None
    attempt(plan, FAIL_503)
    assert plan.decide(NOW, budget) is Stop.MAX_ATTEMPTS
    assert budget.calls == 2  # not consulted for the third
    assert plan.remaining()  # "d" was left: the limit, not exhaustion, stopped it


def test_deadline_when_less_than_min_attempt_remains() -> None:
    limits = {"deadline": NOW + 1.0, "min_attempt_s": 0.05}
    plan = make_plan(**limits)
    attempt(plan, FAIL_503)
    assert plan.decide(NOW + 0.95, Budget()) is None  # exactly min_attempt_s left: still go

    plan = make_plan(**limits)
    attempt(plan, FAIL_503)
    budget = Budget()
    assert plan.decide(NOW + 0.96, budget) is Stop.DEADLINE
    assert budget.calls == 0

    plan = make_plan(**limits)
    attempt(plan, FAIL_503)
    assert plan.decide(NOW + 5.0, Budget()) is Stop.DEADLINE  # long past


TOTAL_OUT = Outcome(OutcomeKind.PROVIDER_FAILURE, FailureReason.TOTAL_TIMEOUT)


def test_an_unanswered_non_streaming_request_is_re_sent_only_within_a_deadline() -> None:
    plan = make_plan()  # non-streaming, no deadline
    attempt(plan, TOTAL_OUT)
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.UNANSWERED
    assert budget.calls == 0
    plan = make_plan(deadline=NOW + 30.0)  # the caller's deadline bounds the re-sends
    attempt(plan, TOTAL_OUT)
    assert plan.decide(NOW, Budget()) is None
    plan = make_plan(stream=True)  # a stream's first token is bounded by first_token_s
    attempt(plan, TOTAL_OUT)
    assert plan.decide(NOW, Budget()) is None
    plan = make_plan()  # other failures still fail over
    attempt(plan, FAIL_503)
    assert plan.decide(NOW, Budget()) is None


def test_deadline_after_an_outcome_with_reason_deadline() -> None:
    plan = make_plan(deadline=NOW + 10.0)
    attempt(plan, DEADLINE_OUT)
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.DEADLINE
    assert budget.calls == 0


def test_deadline_reason_wins_even_when_time_seems_left() -> None:
    # A provider-failure-kind outcome tagged DEADLINE reaches the DEADLINE branch (the
    # branch itself works; only the NEUTRAL kind the attempt really produces misses it).
    plan = make_plan(deadline=None)
    attempt(plan, Outcome(OutcomeKind.PROVIDER_FAILURE, FailureReason.DEADLINE))
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.DEADLINE
    assert budget.calls == 0


def test_exhausted_when_no_candidate_remains() -> None:
    plan = make_plan(ranked("a", "b"), max_attempts=5)
    budget = Budget()
    attempt(plan, FAIL_503)
    assert plan.decide(NOW, budget) is None
    attempt(plan, FAIL_503)
    assert plan.decide(NOW, budget) is Stop.EXHAUSTED
    assert budget.calls == 1


def test_exhausted_counts_health_denied_targets_as_gone() -> None:
    plan = make_plan(ranked("a", "b", "c"), max_attempts=5)
    attempt(plan, FAIL_503, Gate(denied={"b", "c"}))  # a admitted; b, c never asked yet
    assert plan.next_target(Gate(denied={"b", "c"})) is None
    assert plan.decide(NOW, Budget()) is Stop.EXHAUSTED


def test_budget_stops_and_is_consulted_only_to_go_on() -> None:
    plan = make_plan()
    attempt(plan, FAIL_503)
    budget = Budget(ok=False)
    assert plan.decide(NOW, budget) is Stop.BUDGET
    assert budget.calls == 1

    # Every other stop is decided without touching the budget.
    cases: list[tuple[AttemptPlan, float]] = []
    p = make_plan()
    attempt(p, OK)
    cases.append((p, NOW))
    p = make_plan()
    attempt(p, BAD_REQUEST)
    cases.append((p, NOW))
    p = make_plan()
    attempt(p, CLIENT_GONE)
    cases.append((p, NOW))
    p = make_plan(max_attempts=1)
    attempt(p, FAIL_503)
    cases.append((p, NOW))
    p = make_plan(deadline=NOW + 0.01)
    attempt(p, FAIL_503)
    cases.append((p, NOW))
    p = make_plan(ranked("a"))
    attempt(p, FAIL_503)
    cases.append((p, NOW))
    for plan, now in cases:
        refuse = Budget(ok=False)
        assert plan.decide(now, refuse) not in (None, Stop.BUDGET)
        assert refuse.calls == 0


def test_client_gone_stops() -> None:
    plan = make_plan()
    attempt(plan, CLIENT_GONE)
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.CLIENT_GONE
    assert budget.calls == 0


def test_decide_is_sticky_once_stopped() -> None:
    plan = make_plan(ranked("a", "b", "c"))
    attempt(plan, FAIL_503)
    assert plan.decide(NOW, Budget(ok=False)) is Stop.BUDGET
    budget = Budget(ok=True)
    assert plan.decide(NOW, budget) is Stop.BUDGET  # the budget refilling changes nothing
    plan.record(AttemptRecord("b", OK))
    assert plan.decide(NOW, budget) is Stop.BUDGET  # nor does a later record
    assert budget.calls == 0

    plan = make_plan()
    attempt(plan, OK)
    assert plan.decide(NOW, Budget()) is Stop.SUCCESS
    assert plan.decide(NOW + 100, Budget()) is Stop.SUCCESS


def test_decide_going_on_is_not_sticky() -> None:
    plan = make_plan(max_attempts=2)
    attempt(plan, FAIL_503)
    assert plan.decide(NOW, Budget()) is None
    attempt(plan, FAIL_503)
    assert plan.decide(NOW, Budget()) is Stop.MAX_ATTEMPTS


# -- context length exceeded -------------------------------------------------------------------


def test_context_error_restricts_to_strictly_larger_known_windows() -> None:
    plan = make_plan(
        [
            cand("small", 8_000),
            cand("same", 8_000),
            cand("unknown", None),
            cand("tiny", 4_000),
            cand("large", 32_000),
            cand("huge", 128_000),
        ],
        max_attempts=5,
    )
    permit = plan.next_target(Gate())
    assert permit is not None and permit.target_id == "small"
    plan.record(AttemptRecord("small", CONTEXT_400), context_exceeded=True)
    assert plan.min_context == 8_000
    assert [c.target_id for c in plan.remaining()] == ["large", "huge"]
    budget = Budget()
    assert plan.decide(NOW, budget) is None  # a caller error, yet a larger model may take it
    assert budget.calls == 1
    gate = Gate()
    permit = plan.next_target(gate)
    assert permit is not None and permit.target_id == "large"
    assert gate.asked == ["large"]  # the smaller ones are not even asked


def test_context_error_with_no_larger_candidate_is_exhausted() -> None:
    plan = make_plan([cand("big", 128_000), cand("small", 8_000), cand("unknown")])
    permit = plan.next_target(Gate())
    assert permit is not None and permit.target_id == "big"
    plan.record(AttemptRecord("big", CONTEXT_400), context_exceeded=True)
    assert plan.remaining() == []
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.EXHAUSTED  # the exchange passes the 400 through
    assert budget.calls == 0


def test_context_error_chain_keeps_growing() -> None:
    plan = make_plan([cand("a", 8_000), cand("b", 32_000), cand("c", 16_000)], max_attempts=3)
    plan.record(AttemptRecord("a", CONTEXT_400), context_exceeded=True)
    assert [c.target_id for c in plan.remaining()] == ["b", "c"]
    assert plan.decide(NOW, Budget()) is None
    plan.record(AttemptRecord("b", CONTEXT_400), context_exceeded=True)
    assert plan.remaining() == []  # c (16k) is smaller than b (32k), which was too small
    assert plan.decide(NOW, Budget()) is Stop.EXHAUSTED


def test_context_error_on_unknown_window_keeps_only_known_windows() -> None:
    # Documented behaviour: with the failing target's window unknown, any known window counts.
    plan = make_plan([cand("u"), cand("v"), cand("k", 4_000)])
    plan.record(AttemptRecord("u", CONTEXT_400), context_exceeded=True)
    assert plan.min_context == 0
    assert [c.target_id for c in plan.remaining()] == ["k"]


def test_plain_caller_error_after_a_context_error_passes_through() -> None:
    plan = make_plan([cand("a", 8_000), cand("b", 32_000), cand("c", 128_000)])
    plan.record(AttemptRecord("a", CONTEXT_400), context_exceeded=True)
    assert plan.decide(NOW, Budget()) is None
    plan.record(AttemptRecord("b", BAD_REQUEST))  # e.g. an invalid parameter: not context
    budget = Budget()
    assert plan.decide(NOW, budget) is Stop.PASS_THROUGH
    assert budget.calls == 0
