"""Full-jitter backoff between attempts (`AttemptPlan.backoff_s`): the bounds and spread of
each wait, reproducible with a seed, never past the deadline minus `min_attempt_s`, never
negative.

No sockets, no sleeping: time is an explicit `now`, randomness is seeded.
"""

from __future__ import annotations

import pytest

from tests.unit.planning import NOW, make_plan


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
