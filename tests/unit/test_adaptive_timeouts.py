"""Adaptive first-byte limits (issue 14, part 6): the computed limits, and the health store's
cheap p95 they come from."""

from __future__ import annotations

import random

from gateway.config import load_data
from gateway.config.model import AdaptiveTimeouts, Timeouts
from gateway.resilience.adaptive import adapted
from health.clock import ManualClock
from health.ewma import Reservoir
from health.memory import MemoryStore
from health.outcome import succeeded

ON = AdaptiveTimeouts(enabled=True, factor=3.0, floor_s=5.0, cap_s=60.0)
FIXED = Timeouts(headers_s=10.0, first_token_s=30.0, idle_s=30.0, adaptive=ON)


def limits(t: Timeouts) -> tuple[float, float, float]:
    return t.headers_s, t.first_token_s, t.idle_s


def test_the_limit_is_factor_times_p95_within_floor_and_cap() -> None:
    assert limits(adapted(FIXED, 4.0, final=False)) == (12.0, 12.0, 12.0)  # 3 x 4 s
    assert limits(adapted(FIXED, 0.2, final=False)) == (5.0, 5.0, 5.0)  # the floor
    assert limits(adapted(FIXED, 40.0, final=False)) == (60.0, 60.0, 60.0)  # the cap
    # Longer than the fixed 30 s when the target is that slow: it is not cut by a number.
    assert adapted(FIXED, 15.0, final=False).first_token_s == 45.0
    # Everything else is the fixed timeouts'.
    t = adapted(FIXED, 4.0, final=False)
    assert (t.connect_s, t.total_s) == (FIXED.connect_s, FIXED.total_s)


def test_the_last_candidate_keeps_at_least_its_fixed_limits() -> None:
    assert limits(adapted(FIXED, 4.0, final=True)) == (12.0, 30.0, 30.0)
    assert limits(adapted(FIXED, 15.0, final=True)) == (45.0, 45.0, 45.0)  # a slow one: more


def test_no_samples_or_off_means_the_fixed_limits() -> None:
    assert adapted(FIXED, None, final=False) is FIXED
    off = Timeouts()
    assert not off.adaptive.enabled  # off by default
    assert adapted(off, 4.0, final=False) is off


def test_a_provider_and_a_route_configure_it() -> None:
    config = load_data(
        {
            "providers": {
                "p": {
                    "base_url": "http://127.0.0.1:1/v1",
                    "timeouts": {"adaptive": {"enabled": True, "factor": 2}},
                }
            },
            "routes": [
                {"alias": "a", "candidates": ["m@p"]},
                {
                    "alias": "b",
                    "candidates": ["m@p"],
                    "timeouts": {"first_token_s": 9, "adaptive": {"enabled": False}},
                },
            ],
        },
        env={},
    )
    a = config.providers["p"].timeouts.adaptive
    assert (a.enabled, a.factor, a.floor_s, a.cap_s) == (True, 2.0, 5.0, 120.0)
    route_b = config.routes[1]
    assert route_b.timeouts["first_token_s"] == 9
    assert route_b.timeouts["adaptive"] == AdaptiveTimeouts(enabled=False)


def test_the_store_p95_is_cheap_and_follows_the_samples() -> None:
    r = Reservoir()
    assert r.p95() is None
    for _ in range(100):
        r.add(1.0)
    assert r.p95() == 1.0
    for _ in range(31):  # not re-sorted on every read: at most once per 32 samples
        r.add(10.0)
    assert r.p95() == 1.0
    r.add(10.0)
    assert r.p95() == 10.0  # 32 of 132 samples are 10 s


def test_the_first_samples_refresh_it_quickly() -> None:
    r = Reservoir()
    r.add(0.01)
    assert r.p95() == 0.01
    r.add(2.0)
    assert r.p95() == 2.0  # the second sample already counts, not the 33rd


def test_the_store_serves_the_p95_of_first_tokens() -> None:
    store = MemoryStore(clock=ManualClock(0.0), rng=random.Random(1))
    assert store.first_token_p95_s("t") is None
    for ttft in (0.1, 0.2, 0.3, 0.4):
        permit = store.acquire("t")
        assert permit is not None
        store.release(permit, succeeded(200, ttft_s=ttft))
    assert store.first_token_p95_s("t") == 0.4
