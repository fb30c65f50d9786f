"""The retry budget (`gateway.resilience.budget.RetryBudget`) on a ManualClock: a ratio of the requests
plus a floor, over a sliding window; and attempt plans in a total outage that it keeps from
becoming a retry storm.

No sockets, no sleeping: time is a ManualClock, randomness is seeded.
"""

from __future__ import annotations

import math
import random

import pytest

from gateway.resilience.budget import BudgetSettings, RetryBudget
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Limits, Stop
from health.clock import ManualClock
from tests.unit.planning import FAIL_503, Gate, ranked


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
