"""Retry planning in virtual time: the attempt plan, the retry budget, and the real loop
(`gateway.driving.drive`) driving them with a fake attempt.

No sockets, no sleeping: time is a ManualClock or an explicit `now`, randomness is seeded.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from gateway.budget import BudgetSettings, RetryBudget
from gateway.driving import drive
from gateway.plan import AttemptPlan, AttemptRecord, Limits, Stop, would_try
from health.breaker import Admission
from health.clock import ManualClock
from health.outcome import FailureReason, Outcome, OutcomeKind, classify_status
from health.store import Permit
from policies.types import Candidate

OK = classify_status(200)
FAIL_503 = classify_status(503)
THROTTLED = classify_status(429, retry_after="5")
CREDENTIAL = classify_status(401)
BAD_REQUEST = classify_status(400)  # caller error
CONTEXT_400 = classify_status(400)  # a caller error the exchange recognised as context length
CLIENT_GONE = Outcome(OutcomeKind.NEUTRAL, FailureReason.CLIENT_GONE)
# What gateway/attempt.py `_blame` returns when the caller's deadline ran out mid-attempt.
DEADLINE_OUT = Outcome(OutcomeKind.NEUTRAL, FailureReason.DEADLINE)

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


# -- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "ceiling"),
    [(1, 0.05), (2, 0.1), (3, 0.2), (4, 0.4), (5, 0.8), (6, 1.0), (10, 1.0)],
)
def test_backoff_full_jitter_bounds_and_spread(n: int, ceiling: float) -> None:
    plan = make_plan(backoff_base_s=0.05, backoff_cap_s=1.0, seed=n)
    waits = [plan.backoff_s(n, NOW) for _ in range(2000)]
    assert all(0.0 <= w <= ceiling for w in waits)
    assert min(waits) < 0.05 * ceiling  # full jitter: reaches near zero
    assert max(waits) > 0.95 * ceiling  # and near the ceiling
    assert sum(waits) / len(waits) == pytest.approx(ceiling / 2, rel=0.1)
    assert len(set(waits)) > 1900


def test_backoff_is_reproducible_with_a_seed() -> None:
    a = make_plan(seed=42)
    b = make_plan(seed=42)
    assert [a.backoff_s(2, NOW) for _ in range(5)] == [b.backoff_s(2, NOW) for _ in range(5)]


def test_backoff_never_beyond_the_deadline_minus_min_attempt() -> None:
    plan = make_plan(backoff_base_s=1.0, backoff_cap_s=10.0, deadline=NOW + 1.0, min_attempt_s=0.1)
    for left in (0.9, 0.5, 0.15):
        now = NOW + 1.0 - left
        waits = [plan.backoff_s(5, now) for _ in range(500)]
        assert all(0.0 <= w <= left - 0.1 + 1e-12 for w in waits)
        assert max(waits) == pytest.approx(left - 0.1)  # the cut-off bites with a 10 s ceiling


@pytest.mark.parametrize("now", [NOW + 0.96, NOW + 0.99, NOW + 1.0, NOW + 50.0])
def test_backoff_never_negative(now: float) -> None:
    plan = make_plan(deadline=NOW + 1.0, min_attempt_s=0.05)
    assert all(plan.backoff_s(n, now) == 0.0 for n in range(1, 6))


# -- retry budget ------------------------------------------------------------------------------


def budget_on(clock: ManualClock, floor: int = 10) -> RetryBudget:
    return RetryBudget(BudgetSettings(ratio=0.2, min_retries=floor, window_s=10.0), clock)


def spend_all(budget: RetryBudget, limit: int = 10_000) -> int:
    n = 0
    while n < limit and budget.try_spend():
        n += 1
    return n


def test_budget_defaults_match_reliability_md() -> None:
    s = BudgetSettings()
    assert (s.ratio, s.window_s) == (0.2, 10.0)
    assert s.min_retries > 0
    assert Limits().max_attempts == 3
    assert (Limits().backoff_base_s, Limits().backoff_cap_s) == (0.05, 1.0)


def test_budget_allows_ratio_of_requests_plus_floor_then_refuses() -> None:
    clock = ManualClock()
    budget = budget_on(clock)
    assert budget.left() == 10.0  # a quiet gateway can still fail over
    for _ in range(100):
        budget.on_request()
    assert budget.left() == pytest.approx(30.0)
    assert spend_all(budget) == 30
    assert budget.try_spend() is False
    assert budget.left() == 0.0
    budget.on_request()
    assert budget.try_spend() is False  # 0.2 of a retry is not a retry
    for _ in range(4):
        budget.on_request()
    assert budget.try_spend() is True  # five more requests earn one
    assert budget.try_spend() is False


def test_budget_forgets_requests_and_retries_older_than_the_window() -> None:
    clock = ManualClock(1000.0)
    budget = budget_on(clock)
    for _ in range(100):
        budget.on_request()
    assert spend_all(budget) == 30

    clock.advance(5.0)  # t=1005: still the same window
    assert budget.try_spend() is False
    for _ in range(50):
        budget.on_request()
    assert spend_all(budget) == 10  # 10 + 0.2 * 150 = 40 allowed, 30 spent

    clock.advance(4.5)  # t=1009.5: the t=1000 requests still count
    assert budget.left() == 0.0
    clock.advance(0.5)  # t=1010: they (and their 30 retries) slid out
    assert budget.left() == pytest.approx(10.0)  # 10 + 0.2 * 50 - 10
    assert spend_all(budget) == 10

    clock.advance(5.0)  # t=1015: the t=1005 requests are gone, the t=1010 retries are not
    assert budget.left() == 0.0
    assert budget.try_spend() is False
    clock.advance(5.0)  # t=1020: everything is gone, only the floor is left
    assert budget.left() == 10.0


def run_outage(
    n_requests: int, clock: ManualClock, budget: RetryBudget, gap_s: float
) -> tuple[int, dict[Stop, int]]:
    """Every target fails; each request may make up to 3 attempts. Returns attempts, stops."""
    attempts = 0
    stops: dict[Stop, int] = {}
    rng = random.Random(3)
    for _ in range(n_requests):
        budget.on_request()
        plan = AttemptPlan(ranked("a", "b", "c", "d"), Limits(max_attempts=3), rng=rng)
        while True:
            permit = plan.next_target(Gate(now=clock.now))
            assert permit is not None
            plan.record(AttemptRecord(permit.target_id, FAIL_503))
            attempts += 1
            stop = plan.decide(clock.now(), budget.try_spend)
            if stop is not None:
                stops[stop] = stops.get(stop, 0) + 1
                break
        clock.advance(gap_s)
    return attempts, stops


def test_total_outage_burst_is_bounded_by_the_budget() -> None:
    clock = ManualClock()
    n, floor = 200, 10
    attempts, stops = run_outage(n, clock, budget_on(clock, floor), gap_s=0.0)
    assert attempts <= 1.2 * n + floor
    assert attempts == 250  # 200 first attempts + 10 + 0.2 * 200 retries
    assert stops[Stop.BUDGET] > 0
    assert sum(stops.values()) == n


def test_total_outage_sustained_is_bounded_by_the_budget() -> None:
    clock = ManualClock()
    n, floor, gap = 1000, 10, 0.05  # 20 requests/s for 50 s
    attempts, stops = run_outage(n, clock, budget_on(clock, floor), gap_s=gap)
    windows = math.ceil(n * gap / 10.0) + 1
    assert attempts <= 1.2 * n + floor * windows
    assert attempts < 1.3 * n  # nowhere near 3x: no retry storm
    assert stops[Stop.BUDGET] > 0


def test_quiet_gateway_fails_over_fully_within_the_floor() -> None:
    clock = ManualClock()
    attempts, stops = run_outage(3, clock, budget_on(clock, 10), gap_s=0.1)
    assert attempts == 9  # 3 requests x 3 attempts: the floor covers the 6 retries
    assert stops == {Stop.MAX_ATTEMPTS: 3}


# -- the real loop (gateway.driving.drive) in virtual time ---------------------------------------


class LoopGates:
    """Health and budget as the planner sees them: a denied set, a real RetryBudget on the
    virtual clock, panic on or off, other requests' panic attempts."""

    def __init__(
        self, clock: ManualClock, denied: Iterable[str], budget: BudgetSettings, panic: bool
    ) -> None:
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

    def spend(self) -> bool:
        return self.budget.try_spend()

    def panic_free(self, target_id: str) -> bool:
        return target_id not in self.panicking


class Loop:
    """The real loop with a fake attempt: each attempt takes `attempt_s` of virtual time and
    ends as `script` says; sleeps advance the same clock. Records when each attempt started."""

    def __init__(
        self,
        cands: list[Candidate],
        script: dict[str, Outcome],
        *,
        denied: Iterable[str] = (),
        context_errors: Iterable[str] = (),
        attempt_s: float = 0.2,
        budget: BudgetSettings | None = None,
        seed: int = 7,
        panic: bool = True,
        **limits: Any,
    ) -> None:
        self.clock = ManualClock(100.0)
        self.plan = AttemptPlan(cands, Limits(**limits), rng=random.Random(seed))
        settings = budget or BudgetSettings(ratio=0.2, min_retries=10, window_s=10.0)
        self.gates = LoopGates(self.clock, denied, settings, panic)
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
        outcome = self.script[tid]
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


async def test_loop_fails_over_in_rank_order_with_full_jitter_waits() -> None:
    loop = Loop(ranked("a", "b", "c", "d"), {"a": FAIL_503, "b": THROTTLED, "c": OK, "d": OK})
    assert await loop.run() == ("c", OK)
    assert loop.targets == ["a", "b", "c"]
    assert loop.plan.stop is Stop.SUCCESS
    assert len(loop.waits) == 2
    assert 0.0 <= loop.waits[0] <= 0.05  # after attempt 1: base
    assert 0.0 <= loop.waits[1] <= 0.10  # after attempt 2: base * 2
    loop.assert_timeline()
    assert loop.starts[0][1] == 100.0
    assert loop.clock.now() == pytest.approx(100.0 + 3 * 0.2 + sum(loop.waits))
    assert loop.gates.budget.left() == pytest.approx(10.0 + 0.2 - 2)  # two retries spent


async def test_loop_success_at_once_spends_nothing_and_never_sleeps() -> None:
    loop = Loop(ranked("a", "b"), {"a": OK, "b": OK})
    assert await loop.run() == ("a", OK)
    assert loop.plan.stop is Stop.SUCCESS
    assert loop.waits == []
    assert loop.gates.budget.left() == pytest.approx(10.0 + 0.2)


async def test_loop_skips_denied_targets_and_stops_at_max_attempts() -> None:
    loop = Loop(
        ranked("a", "b", "c", "d", "e"), dict.fromkeys("abcde", FAIL_503), denied={"b"},
        max_attempts=3,
    )  # fmt: skip
    assert await loop.run() == ("d", FAIL_503)  # the last failure
    assert loop.targets == ["a", "c", "d"]
    assert loop.plan.stop is Stop.MAX_ATTEMPTS
    assert len(loop.waits) == 2  # no wait after the last attempt
    loop.assert_timeline()
    for w, ceiling in zip(loop.waits, (0.05, 0.1), strict=True):
        assert 0.0 <= w <= ceiling


async def test_loop_waits_spread_across_requests() -> None:
    firsts, seconds = [], []
    for seed in range(200):
        loop = Loop(ranked("a", "b", "c"), dict.fromkeys("abc", FAIL_503), seed=seed)
        await loop.run()
        assert loop.plan.stop is Stop.MAX_ATTEMPTS
        firsts.append(loop.waits[0])
        seconds.append(loop.waits[1])
    assert min(firsts) >= 0.0 and max(firsts) <= 0.05
    assert min(seconds) >= 0.0 and max(seconds) <= 0.10
    assert max(firsts) - min(firsts) > 0.04  # full jitter, not a fixed delay
    assert max(seconds) > 0.08


async def test_loop_stops_at_the_deadline_and_waits_fit_in_it() -> None:
    loop = Loop(
        ranked("a", "b", "c", "d"), dict.fromkeys("abcd", FAIL_503), attempt_s=0.3,
        deadline=100.5, min_attempt_s=0.05, max_attempts=10, backoff_base_s=1.0,
        backoff_cap_s=5.0,
    )  # fmt: skip
    await loop.run()
    assert loop.targets == ["a", "b"]  # the second attempt ends past 100.5
    assert loop.plan.stop is Stop.DEADLINE
    assert len(loop.waits) == 1
    assert 0.0 <= loop.waits[0] <= 0.5 - 0.3 - 0.05 + 1e-9  # cut to the time left
    loop.assert_timeline()


async def test_loop_stops_on_an_empty_budget_without_sleeping() -> None:
    empty = BudgetSettings(ratio=0.0, min_retries=0, window_s=10.0)
    loop = Loop(ranked("a", "b", "c"), dict.fromkeys("abc", FAIL_503), budget=empty)
    assert await loop.run() == ("a", FAIL_503)
    assert loop.plan.stop is Stop.BUDGET
    assert loop.waits == []


async def test_loop_exhausts_when_no_candidate_is_left() -> None:
    loop = Loop(ranked("a", "b", "c"), dict.fromkeys("abc", FAIL_503), max_attempts=5)
    await loop.run()
    assert loop.targets == ["a", "b", "c"]
    assert loop.plan.stop is Stop.EXHAUSTED
    assert len(loop.waits) == 2


async def test_loop_denied_last_candidate_costs_no_retry_and_no_sleep() -> None:
    # after b fails only c remains and it is denied: the plan stops at once, unpaid
    loop = Loop(ranked("a", "b", "c"), dict.fromkeys("abc", FAIL_503), denied={"c"})
    await loop.run()
    assert loop.targets == ["a", "b"]
    assert loop.plan.stop is Stop.EXHAUSTED
    assert len(loop.waits) == 1  # only between a and b
    assert loop.gates.budget.left() == pytest.approx(10.0 + 0.2 - 1)  # one retry spent


async def test_loop_panic_attempt_once_when_everything_is_out() -> None:
    loop = Loop(ranked("a", "b", "c"), dict.fromkeys("abc", FAIL_503), denied={"a", "b", "c"})
    await loop.run()
    assert loop.targets == ["a"]  # one panic attempt on the least-bad
    assert loop.gates.forced == ["a"] and loop.plan.history[0].panic
    assert loop.plan.stop is Stop.EXHAUSTED
    assert loop.waits == []


async def test_loop_no_panic_while_another_request_panics_on_the_target() -> None:
    loop = Loop(ranked("a", "b"), dict.fromkeys("ab", FAIL_503), denied={"a", "b"})
    loop.gates.panicking.add("a")
    assert await loop.run() is None
    assert loop.targets == [] and loop.plan.stop is Stop.EXHAUSTED


async def test_loop_without_panic_makes_no_attempt_when_everything_is_out() -> None:
    loop = Loop(ranked("a", "b"), dict.fromkeys("ab", FAIL_503), denied={"a", "b"}, panic=False)
    assert await loop.run() is None
    assert loop.plan.stop is Stop.EXHAUSTED


async def test_loop_caller_error_is_returned_without_retry() -> None:
    loop = Loop(ranked("a", "b"), {"a": BAD_REQUEST, "b": OK})
    assert await loop.run() == ("a", BAD_REQUEST)
    assert loop.targets == ["a"]
    assert loop.plan.stop is Stop.PASS_THROUGH
    assert loop.waits == []


async def test_loop_context_error_goes_to_a_larger_window() -> None:
    cands = [cand("a", 8_000), cand("b", 4_000), cand("c", 32_000)]
    loop = Loop(cands, {"a": CONTEXT_400, "b": OK, "c": OK}, context_errors={"a"})
    assert await loop.run() == ("c", OK)
    assert loop.targets == ["a", "c"]  # b's window is smaller: not tried
    assert len(loop.waits) == 1 and 0.0 <= loop.waits[0] <= 0.05
    loop.assert_timeline()


async def test_loop_context_error_without_a_larger_window_returns_the_error() -> None:
    cands = [cand("a", 32_000), cand("b", 8_000)]
    loop = Loop(cands, {"a": CONTEXT_400, "b": OK}, context_errors={"a"})
    assert await loop.run() == ("a", CONTEXT_400)  # the exchange relays this 400 as is
    assert loop.targets == ["a"]
    assert loop.plan.stop is Stop.EXHAUSTED
    assert loop.waits == []


async def test_loop_client_gone_stops() -> None:
    loop = Loop(ranked("a", "b"), {"a": CLIENT_GONE, "b": OK})
    assert await loop.run() == ("a", CLIENT_GONE)
    assert loop.targets == ["a"]
    assert loop.plan.stop is Stop.CLIENT_GONE


async def test_loop_unanswered_non_streaming_request_is_not_re_sent() -> None:
    total_out = Outcome(OutcomeKind.PROVIDER_FAILURE, FailureReason.TOTAL_TIMEOUT)
    loop = Loop(ranked("a", "b"), {"a": total_out, "b": OK}, attempt_s=600.0)
    await loop.run()
    assert loop.targets == ["a"] and loop.plan.stop is Stop.UNANSWERED


def test_hedge_spends_the_budget_and_never_picks_the_busy_target() -> None:
    clock = ManualClock(100.0)
    gates = LoopGates(clock, (), BudgetSettings(ratio=0.0, min_retries=1, window_s=10.0), True)
    plan = make_plan(ranked("a", "b", "c"))
    assert plan.pick(gates) == (Permit("a", probe=False), False)
    second = plan.hedge(gates, "a")
    assert second is not None and second.target_id == "b"
    assert "a" not in plan.skipped  # only out while the hedge was chosen
    assert plan.hedge(gates, "a") is None  # the budget (one retry) is spent


def test_hedge_costs_nothing_when_no_other_target_is_admitted() -> None:
    clock = ManualClock(100.0)
    gates = LoopGates(clock, {"b"}, BudgetSettings(ratio=0.0, min_retries=1, window_s=10.0), True)
    plan = make_plan(ranked("a", "b"))
    assert plan.pick(gates) is not None
    assert plan.hedge(gates, "a") is None
    assert gates.budget.left() == pytest.approx(1.0)  # not spent on a dead end


def test_the_dry_run_asks_the_same_planner() -> None:
    def peek(tid: str) -> Admission:
        return Admission.DENY if tid == "b" else Admission.ALLOW

    assert would_try(ranked("a", "b", "c", "d"), 3, peek, panic=True) == ["a", "c", "d"]
    assert would_try(ranked("a", "b"), 3, lambda _t: Admission.DENY, panic=True) == ["a"]
    assert would_try(ranked("a", "b"), 3, lambda _t: Admission.DENY, panic=False) == []
