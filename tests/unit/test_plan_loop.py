"""The real retry loop (`gateway.resilience.driving.drive`) in virtual time, with a fake attempt: the
failover order, full-jitter waits on the same clock, and every way it stops (success, max
attempts, deadline, budget, exhausted, panic, caller and context errors, client gone,
unanswered); then the plan's hedge pick and the dry run (`would_try`) against the same gates.

No sockets, no sleeping: time is a ManualClock, randomness is seeded.
"""

from __future__ import annotations

import pytest

from gateway.resilience.budget import BudgetSettings
from gateway.resilience.dry_run import would_try
from gateway.resilience.plan import Stop
from health.breaker import Admission
from health.clock import ManualClock
from health.outcome import FailureReason, Outcome, OutcomeKind
from health.store import Permit
from tests.unit.planning import (
    BAD_REQUEST,
    CLIENT_GONE,
    CONTEXT_400,
    FAIL_503,
    OK,
    THROTTLED,
    Loop,
    LoopGates,
    cand,
    make_plan,
    ranked,
)


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
