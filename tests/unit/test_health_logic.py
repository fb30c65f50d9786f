"""Health decision logic in virtual time: no sockets, no sleeping."""

from __future__ import annotations

import random

import pytest

from health.breaker import Admission, Breaker, BreakerState
from health.clock import ManualClock
from health.ewma import PeakEwma, Reservoir
from health.memory import MemoryStore
from health.outcome import (
    FailureReason,
    Outcome,
    OutcomeKind,
    classify_status,
    parse_retry_after,
    provider_failure,
)
from health.settings import BreakerSettings, HealthSettings
from health.window import SlidingWindow, WindowCounts

OK = Outcome(OutcomeKind.SUCCESS, status=200, latency_s=0.1)
FAIL = provider_failure(FailureReason.STATUS)
NO_JITTER = BreakerSettings(jitter=0.0)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, OutcomeKind.SUCCESS),
        (400, OutcomeKind.CALLER_ERROR),
        (404, OutcomeKind.MISCONFIGURED),
        (413, OutcomeKind.CALLER_ERROR),
        (422, OutcomeKind.CALLER_ERROR),
        (401, OutcomeKind.MISCONFIGURED),
        (403, OutcomeKind.MISCONFIGURED),
        (408, OutcomeKind.PROVIDER_FAILURE),
        (429, OutcomeKind.THROTTLED),
        (500, OutcomeKind.PROVIDER_FAILURE),
        (503, OutcomeKind.PROVIDER_FAILURE),
        (529, OutcomeKind.PROVIDER_FAILURE),
    ],
)
def test_classify_status(status: int, kind: OutcomeKind) -> None:
    assert classify_status(status).kind is kind


def test_fails_over_only_for_provider_side_outcomes() -> None:
    over = {k for k in OutcomeKind if k.fails_over}
    assert over == {
        OutcomeKind.PROVIDER_FAILURE,
        OutcomeKind.THROTTLED,
        OutcomeKind.MISCONFIGURED,
    }


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    # Wed, 21 Oct 2015 07:28:00 GMT is 1445412480 in epoch seconds.
    now = 1445412480.0 - 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_epoch_s=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_epoch_s=now + 60) == 0.0
    out = classify_status(429, retry_after="7")
    assert out.kind is OutcomeKind.THROTTLED
    assert out.retry_after_s == 7.0


def test_window_slides_and_forgets() -> None:
    w = SlidingWindow(window_s=10, bucket_s=1)
    for t in range(10):
        w.add(100.0 + t, success=t % 2 == 0)
    assert w.counts(109.5) == WindowCounts(5, 5)
    # 3 s later the three oldest buckets (t=0,1,2: s, f, s) have slid out.
    assert w.counts(112.5) == WindowCounts(3, 4)
    assert w.counts(200.0) == WindowCounts(0, 0)
    assert w.counts(200.0).failure_rate == 0.0


def test_peak_ewma_jumps_up_and_decays_down() -> None:
    e = PeakEwma(tau_s=10)
    e.observe(0.1, 0.0)
    e.observe(2.0, 1.0)
    assert e.value == 2.0  # a slowdown counts at once
    e.observe(0.1, 11.0)  # one time constant later: ~63 % of the way back
    assert e.value is not None
    assert 0.75 < e.value < 0.8
    for t in range(12, 100):
        e.observe(0.1, float(t))
    assert e.value == pytest.approx(0.1, abs=0.01)


def test_reservoir_percentiles() -> None:
    r = Reservoir(size=100)
    assert r.percentile(0.5) is None
    for v in range(1, 101):
        r.add(float(v))
    assert r.percentile(0.5) == 50.0
    assert r.percentile(0.99) == 99.0
    assert r.percentile(1.0) == 100.0


def test_breaker_trips_on_consecutive_failures_and_probes_once() -> None:
    b = Breaker(NO_JITTER, random.Random(1))
    empty = WindowCounts(0, 0)
    for _ in range(4):
        b.on_failure(0.0, empty, probe=False)
    assert b.state(0.0) is BreakerState.CLOSED
    b.on_failure(0.0, empty, probe=False)
    assert b.state(0.0) is BreakerState.OPEN
    assert b.admit(9.9) is Admission.DENY
    assert b.admit(10.0) is Admission.PROBE
    assert b.admit(10.0) is Admission.DENY  # exactly one probe at a time
    b.on_success(10.1, probe=True)
    assert b.state(10.1) is BreakerState.HALF_OPEN  # needs 2 successes
    assert b.admit(10.2) is Admission.PROBE
    b.on_success(10.3, probe=True)
    assert b.state(10.3) is BreakerState.CLOSED
    assert b.admit(10.3) is Admission.ALLOW


def test_a_failed_probe_reopens_for_as_long_as_before_so_an_outage_is_probed_steadily() -> None:
    # Before: each failed probe doubled the open time (10, 20, 40 s), so a primary that came
    # back after 60 s was not probed again until ~88 s (issue 14).
    b = Breaker(BreakerSettings(jitter=0.0, open_s=10, open_max_s=120), random.Random(1))
    b.trip(0.0, "test")
    probes = []
    now = 0.0
    while now < 60.0:
        until = b.open_until()
        assert until is not None
        now = until
        assert b.admit(now) is Admission.PROBE
        probes.append(now)
        b.on_failure(now, WindowCounts(0, 1), probe=True)  # the outage goes on
    assert probes == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert b.trips == 1  # one outage, one trip


def _recover(b: Breaker, now: float) -> float:
    """Wait out the open time and pass both probes; the time it closed."""
    until = b.open_until()
    assert until is not None
    for i in range(2):
        assert b.admit(until + i) is Admission.PROBE
        b.on_success(until + i, probe=True)
    assert b.state(until + 1) is BreakerState.CLOSED
    return until + 1


def test_flapping_lengthens_the_open_time_and_caps_and_a_calm_spell_forgets_it() -> None:
    b = Breaker(BreakerSettings(jitter=0.0, open_s=10, open_max_s=30), random.Random(1))
    b.trip(0.0, "test")
    assert b.open_until() == 10.0
    closed = _recover(b, 0.0)
    b.trip(closed + 1, "again")  # it failed again soon after recovering: flapping
    assert b.open_until() == closed + 1 + 20.0
    closed = _recover(b, closed)
    b.trip(closed + 1, "again")
    assert b.open_until() == closed + 1 + 30.0  # doubled, capped at open_max_s
    until = b.open_until()
    assert until is not None
    b.admit(until)
    b.on_failure(until, WindowCounts(0, 1), probe=True)  # a failed probe keeps the level
    assert b.open_until() == until + 30.0
    closed = _recover(b, until)
    b.trip(closed + 30.0, "much later")  # it stayed healthy for open_max_s: a fresh outage
    assert b.open_until() == closed + 30.0 + 10.0


def test_slow_start_ramps_the_share_of_traffic_after_a_recovery() -> None:
    b = Breaker(BreakerSettings(jitter=0.0, open_s=10, slow_start_s=20), random.Random(1))
    assert b.warmth(0.0) == 1.0  # never tripped: all of it
    b.trip(0.0, "test")
    assert b.warmth(5.0) == 1.0  # open: admission says no; the ramp never holds a probe back
    closed = _recover(b, 0.0)
    assert b.warmth(closed) == pytest.approx(0.1)
    assert b.warmth(closed + 10.0) == pytest.approx(0.55)
    assert b.warmth(closed + 20.0) == 1.0
    assert b.warmth(closed + 21.0) == 1.0


def test_slow_start_off_gives_all_traffic_back_at_once() -> None:
    b = Breaker(BreakerSettings(jitter=0.0, open_s=10, slow_start_s=0), random.Random(1))
    b.trip(0.0, "test")
    closed = _recover(b, 0.0)
    assert b.warmth(closed) == 1.0


def test_breaker_jitter_stays_within_bounds() -> None:
    rng = random.Random(7)
    opens = []
    for _ in range(200):
        b = Breaker(BreakerSettings(jitter=0.2, open_s=10), rng)
        b.trip(0.0, "test")
        until = b.open_until()
        assert until is not None
        opens.append(until)
    assert min(opens) >= 8.0 and max(opens) <= 12.0
    assert max(opens) - min(opens) > 2.0  # it does spread


def test_breaker_trips_on_failure_rate_with_minimum_volume() -> None:
    b = Breaker(NO_JITTER)
    b.on_failure(0.0, WindowCounts(successes=9, failures=10), probe=False)
    assert b.state(0.0) is BreakerState.CLOSED  # 19 calls: below min_calls
    b.on_success(0.0, probe=False)
    b.on_failure(0.0, WindowCounts(successes=10, failures=10), probe=False)
    assert b.state(0.0) is BreakerState.OPEN


def test_neutral_probe_frees_the_slot_without_moving_state() -> None:
    b = Breaker(NO_JITTER)
    b.trip(0.0, "test")
    assert b.admit(10.0) is Admission.PROBE
    b.on_neutral(probe=True)
    assert b.state(10.0) is BreakerState.HALF_OPEN
    assert b.admit(10.0) is Admission.PROBE


def test_store_throttle_is_neutral_and_expires() -> None:
    clock = ManualClock()
    store = MemoryStore(HealthSettings(breaker=NO_JITTER), clock=clock)
    permit = store.acquire("t")
    assert permit is not None
    store.release(permit, classify_status(429, retry_after="3"))
    view = store.snapshot(["t"])["t"]
    assert view.throttled_for_s == pytest.approx(3.0)
    assert view.window_calls == 0 and view.consecutive_failures == 0
    assert store.acquire("t") is None  # throttled: no traffic until Retry-After
    clock.advance(3.0)
    assert store.acquire("t") is not None


def test_store_caps_a_huge_retry_after() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    permit = store.acquire("t")
    assert permit is not None
    store.release(permit, classify_status(429, retry_after="86400"))  # "come back tomorrow"
    assert store.snapshot(["t"])["t"].throttled_for_s == pytest.approx(300.0)
    clock.advance(300.0)
    assert store.acquire("t") is not None


def test_store_throttle_without_retry_after_backs_off() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    waits = []
    for _ in range(6):
        while (permit := store.acquire("t")) is None:
            clock.advance(0.5)
        store.release(permit, classify_status(429))
        waits.append(store.snapshot(["t"])["t"].throttled_for_s)
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_store_credential_error_marks_misconfigured_for_long() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    permit = store.acquire("t")
    assert permit is not None
    store.release(permit, classify_status(401))
    view = store.snapshot(["t"])["t"]
    assert view.misconfigured and view.state is BreakerState.OPEN
    assert view.open_for_s == pytest.approx(300.0)


def test_store_tracks_in_flight_and_latency() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    a, b = store.acquire("t"), store.acquire("t")
    assert a is not None and b is not None
    assert store.snapshot(["t"])["t"].in_flight == 2
    store.release(a, Outcome(OutcomeKind.SUCCESS, latency_s=0.2, ttft_s=0.05))
    store.release(b, Outcome(OutcomeKind.NEUTRAL, FailureReason.CLIENT_GONE))
    view = store.snapshot(["t"], detailed=True)["t"]
    assert view.in_flight == 0
    assert view.latency_ms_ewma == 200.0 and view.latency_ms_p50 == 200.0
    assert view.ttft_ms_ewma == 50.0
    assert view.window_calls == 1  # the client going away is not counted


def test_unknown_target_reads_healthy() -> None:
    store = MemoryStore()
    view = store.snapshot(["never-seen"])["never-seen"]
    assert view.available and view.state is BreakerState.CLOSED


def test_the_breakers_state_is_pybreakers_after_every_move() -> None:
    """`Breaker.state` reads its own copy of pybreaker's state (kept by pybreaker's listener):
    after every kind of move - a trip by failures, by rate, half-open, a failed and a good
    probe, a close, the fleet's force open and close - it says what pybreaker says."""
    import pybreaker

    from health.breaker import _FROM_PYBREAKER

    b = Breaker(BreakerSettings(consecutive_failures=2, open_s=1.0, half_open_successes=1))
    now = 100.0
    window = WindowCounts(0, 1)

    def same() -> None:
        assert b.state(now) is _FROM_PYBREAKER[b._cb.current_state]

    same()
    seen = set()
    steps = [
        lambda: b.on_failure(now, window, probe=False),
        lambda: b.on_failure(now, window, probe=False),  # 2 in a row: open
        lambda: None,  # open time not over
        "wait",  # half-open on the next read
        lambda: b.on_failure(now, window, probe=b.admit(now) is Admission.PROBE),  # open again
        "wait",
        lambda: b.on_success(now, probe=b.admit(now) is Admission.PROBE),  # closed
        lambda: b.force_open(now, 5.0, 1, "a peer saw it fail"),
        lambda: b.force_close(now, "a peer saw it recover"),
        lambda: b.trip(now, "misconfigured", open_s=2.0),
    ]
    for step in steps:
        if step == "wait":
            now += 1.5
        else:
            step()  # type: ignore[operator]
        same()
        seen.add(b._cb.current_state)
    assert seen == {pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN}
