"""Reconciliation with what Redis held (`reconcile`): the open, half-open and throttle keys
adopted into the local breaker, a resync republishing what is local, and the fleet-wide
failure window tripping the breaker.

Pure, in virtual time: no sockets, no sleeping, no Redis. A `FleetReading` stands for what
Redis held.
"""

from __future__ import annotations

import pytest

from health.breaker import Admission, BreakerState
from health.clock import ManualClock
from health.fleet_event import EventKind, FleetEvent
from health.fleet_view import FleetReading, apply_event, reconcile, trips_of
from health.outcome import classify_status
from health.signals import TargetSignals
from health.window import WindowCounts
from tests.unit.fleet import EMPTY, NO_JITTER, TID, make_sig, trip


def reading(
    *,
    open_ms: int | None = None,
    half_open: bool = False,
    throttle_ms: int | None = None,
    window: WindowCounts = EMPTY,
    target_id: str = TID,
    trips: int = 0,
) -> FleetReading:
    return FleetReading(target_id, open_ms, half_open, throttle_ms, window, trips)


def sync(sig: TargetSignals, r: FleetReading, now: float, *, resync: bool) -> list[FleetEvent]:
    return reconcile(sig, r, now, NO_JITTER, resync=resync)


# -- reconciliation (what Redis held) ------------------------------------------------------------


def test_reconcile_open_key_opens_the_local_breaker_for_its_pttl() -> None:
    clock = ManualClock()
    sig = make_sig()
    events = sync(sig, reading(open_ms=2500), clock.now(), resync=False)
    assert events == []
    b = sig.breaker
    assert b.state(clock.now()) is BreakerState.OPEN
    assert b.open_until() == clock.now() + 2.5
    assert b.origin == "fleet"
    clock.advance(2.5)
    assert b.state(clock.now()) is BreakerState.HALF_OPEN


def test_reconcile_adopts_the_trip_count_so_a_missed_event_keeps_the_backoff() -> None:
    """A replica that missed a peer's TRIP (pub/sub is lossy) reads the open key and the
    half-open marker's trip count: its own next trip then opens for as long as the peer's."""
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    sync(sig, reading(open_ms=10_000, half_open=True, trips=3), clock.now(), resync=False)
    assert b.trips == 3
    clock.advance(10.0)
    sync(sig, reading(half_open=True, trips=3), clock.now(), resync=False)
    assert b.admit(clock.now()) is Admission.PROBE
    # A failed probe goes on at the peer's level (its third trip: 10 s * 2**2).
    b.on_failure(clock.now(), WindowCounts(0, 1), probe=True)
    assert b.open_until() == clock.now() + 40.0


@pytest.mark.parametrize(("marker", "trips"), [(b"4", 4), (b"1", 1), (None, 0), (b"x", 0)])
def test_trip_count_from_the_half_open_marker(marker: bytes | None, trips: int) -> None:
    assert trips_of(marker) == trips


def test_reconcile_open_key_never_shortens_a_longer_local_open_but_extends_a_shorter() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    b.trip(clock.now(), "local")
    until = clock.now() + 10.0
    assert sync(sig, reading(open_ms=3000), clock.now(), resync=False) == []
    assert b.open_until() == until
    assert b.origin == "local"
    assert sync(sig, reading(open_ms=25_000), clock.now(), resync=False) == []
    assert b.open_until() == clock.now() + 25.0


@pytest.mark.parametrize("open_ms", [None, 0, -1, -2])
def test_reconcile_treats_a_missing_or_expired_open_key_as_absent(open_ms: int | None) -> None:
    sig = make_sig()
    assert sync(sig, reading(open_ms=open_ms), 1000.0, resync=False) == []
    assert sig.breaker.state(1000.0) is BreakerState.CLOSED
    assert sig.breaker.last_transition is None


def test_reconcile_half_open_marker_moves_a_closed_breaker_to_half_open() -> None:
    clock = ManualClock()
    sig = make_sig()
    events = sync(sig, reading(half_open=True), clock.now(), resync=False)
    assert events == []
    b = sig.breaker
    assert b.state(clock.now()) is BreakerState.HALF_OPEN
    assert b.origin == "fleet"
    # Only afterwards, and only via peek: the slot is not taken (the fleet lock decides).
    assert b.peek(clock.now()) is Admission.PROBE
    assert b.peek(clock.now()) is Admission.PROBE
    view = sig.view(clock.now())
    assert view.state is BreakerState.HALF_OPEN and view.open_for_s == 0.0


def test_reconcile_half_open_marker_leaves_an_open_or_half_open_breaker_alone() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    b.trip(clock.now(), "local")
    assert sync(sig, reading(half_open=True), clock.now(), resync=True) == []
    assert b.open_until() == clock.now() + 10.0
    assert b.origin == "local"
    clock.advance(10.0)
    assert b.admit(clock.now()) is Admission.PROBE
    before = b.last_transition
    assert sync(sig, reading(half_open=True), clock.now(), resync=False) == []
    assert b.state(clock.now()) is BreakerState.HALF_OPEN
    assert b.last_transition is before
    assert b.peek(clock.now()) is Admission.DENY  # our probe is still in flight


def test_reconcile_no_keys_closes_a_breaker_a_peer_opened_at_the_second_reading() -> None:
    clock = ManualClock()
    sig = make_sig()
    apply_event(sig, trip(30.0, trips=2), clock.now())
    clock.advance(1.0)
    b = sig.breaker
    # One reading without the keys: kept, so that its owner can re-publish it if Redis lost it
    # (a real close arrives by pub/sub at once, and at the latest by the next reading).
    assert sync(sig, reading(), clock.now(), resync=False) == []
    assert b.state(clock.now()) is BreakerState.OPEN
    clock.advance(0.25)
    assert sync(sig, reading(), clock.now(), resync=False) == []
    assert b.state(clock.now()) is BreakerState.CLOSED
    assert b.trips > 0  # remembered until it has stayed closed for open_max_s
    assert b.last_transition is not None
    assert b.last_transition.reason == "closed by the fleet"


def test_resync_keeps_a_peers_open_one_period_without_republishing_it() -> None:
    """Redis came back empty: the peer that owns the open re-publishes it, not us."""
    clock = ManualClock()
    sig = make_sig()
    apply_event(sig, trip(30.0, trips=2), clock.now())
    until = clock.now() + 30.0
    clock.advance(1.0)
    assert sync(sig, reading(), clock.now(), resync=True) == []
    b = sig.breaker
    assert b.state(clock.now()) is BreakerState.OPEN
    assert b.open_until() == until
    clock.advance(0.25)  # the owner did not re-publish: the fleet has closed it
    assert sync(sig, reading(), clock.now(), resync=False) == []
    assert b.state(clock.now()) is BreakerState.CLOSED


def test_reconcile_no_keys_closes_a_fleet_half_open() -> None:
    clock = ManualClock()
    sig = make_sig()
    sync(sig, reading(half_open=True), clock.now(), resync=False)
    clock.advance(0.25)
    assert sync(sig, reading(), clock.now(), resync=False) == []
    assert sig.breaker.state(clock.now()) is BreakerState.CLOSED
    assert sig.peek(clock.now()) is Admission.ALLOW


def test_resync_keeps_a_local_open_and_republishes_what_is_left() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    for _ in range(5):
        b.on_failure(clock.now(), EMPTY, probe=False)
    until = clock.now() + 10.0
    clock.advance(4.0)
    events = sync(sig, reading(), clock.now(), resync=True)
    assert b.state(clock.now()) is BreakerState.OPEN
    assert b.open_until() == until
    assert len(events) == 1
    ev = events[0]
    assert (ev.kind, ev.target_id, ev.trips, ev.reason) == (EventKind.TRIP, TID, 1, "resync")
    assert ev.duration_s == pytest.approx(6.0)


def test_resync_republishes_a_local_open_and_a_local_throttle() -> None:
    clock = ManualClock()
    sig = make_sig()
    sig.record(classify_status(429, retry_after="8"), clock.now(), probe=False)
    sig.breaker.trip(clock.now(), "local", open_s=20.0)
    clock.advance(3.0)
    events = sync(sig, reading(), clock.now(), resync=True)
    assert [e.kind for e in events] == [EventKind.TRIP, EventKind.THROTTLE]
    assert events[0].duration_s == pytest.approx(17.0)
    assert events[1].target_id == TID
    assert events[1].duration_s == pytest.approx(5.0)
    assert sig.throttled_until == clock.now() + 5.0  # kept
    assert sig.breaker.state(clock.now()) is BreakerState.OPEN


def test_resync_republishes_a_local_throttle_alone() -> None:
    clock = ManualClock()
    sig = make_sig()
    sig.record(classify_status(429, retry_after="8"), clock.now(), probe=False)
    until = sig.throttled_until
    clock.advance(2.0)
    events = sync(sig, reading(), clock.now(), resync=True)
    assert len(events) == 1
    assert events[0].kind is EventKind.THROTTLE
    assert events[0].duration_s == pytest.approx(6.0)
    assert sig.throttled_until == until
    assert sig.breaker.state(clock.now()) is BreakerState.CLOSED


def test_resync_does_not_republish_an_expired_throttle() -> None:
    clock = ManualClock()
    sig = make_sig()
    sig.record(classify_status(429, retry_after="2"), clock.now(), probe=False)
    clock.advance(2.0)
    assert sync(sig, reading(), clock.now(), resync=True) == []


def test_our_own_open_missing_from_redis_is_republished_not_closed() -> None:
    """Redis lost our trip (a Sentinel failover to a replica that missed the write, a restore;
    no epoch change): before, a missing open key read as "closed by the fleet" and the
    replica force-closed its own breaker with 45 s left (issue 18, item 2)."""
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    b.trip(clock.now(), "local")
    clock.advance(1.0)
    (ev,) = sync(sig, reading(), clock.now(), resync=False)
    assert (ev.kind, ev.target_id, ev.reason) == (EventKind.TRIP, TID, "resync")
    assert ev.duration_s == pytest.approx((b.open_until() or 0) - clock.now())
    assert b.state(clock.now()) is BreakerState.OPEN  # still ours, still open


def test_an_open_whose_time_ran_out_closes_when_the_fleet_has_no_keys() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    b.trip(clock.now(), "local")
    b.trip(clock.now(), "local")
    clock.advance(30.0)  # our open time is over: half-open; the fleet has closed it since
    assert sync(sig, reading(), clock.now(), resync=False) == []
    assert b.state(clock.now()) is BreakerState.CLOSED  # the fleet closed it
    assert b.trips > 0  # remembered until it has stayed closed for open_max_s
    assert sig.peek(clock.now()) is Admission.ALLOW


def test_a_peer_s_open_that_comes_back_is_not_closed() -> None:
    clock = ManualClock()
    sig = make_sig()
    apply_event(sig, trip(10.0), clock.now())
    clock.advance(1.0)
    assert sync(sig, reading(), clock.now(), resync=False) == []  # missing once: kept
    sync(sig, reading(open_ms=8_000), clock.now(), resync=False)  # its owner re-published it
    assert sync(sig, reading(), clock.now(), resync=False) == []  # missing once again: kept
    assert sig.breaker.state(clock.now()) is BreakerState.OPEN


def test_without_resync_a_local_throttle_is_kept_and_not_republished() -> None:
    clock = ManualClock()
    sig = make_sig()
    sig.record(classify_status(429, retry_after="8"), clock.now(), probe=False)
    until = sig.throttled_until
    assert sync(sig, reading(), clock.now(), resync=False) == []
    assert sig.throttled_until == until


def test_reconcile_throttle_key_is_adopted_and_never_shortens() -> None:
    clock = ManualClock()
    sig = make_sig()
    t0 = clock.now()
    assert sync(sig, reading(throttle_ms=4000), t0, resync=False) == []
    assert sig.throttled_until == t0 + 4.0
    assert sig.peek(t0) is Admission.DENY
    clock.advance(1.0)
    sync(sig, reading(throttle_ms=1000), clock.now(), resync=True)
    assert sig.throttled_until == t0 + 4.0
    sync(sig, reading(throttle_ms=9000), clock.now(), resync=False)
    assert sig.throttled_until == clock.now() + 9.0
    assert sig.breaker.last_transition is None  # throttling is neutral


# -- the fleet window ------------------------------------------------------------------------------


def test_view_has_no_fleet_window_before_a_reading() -> None:
    view = make_sig().view(1000.0)
    assert view.fleet_error_rate is None
    assert view.fleet_window_calls == 0


def test_fleet_failure_rate_over_the_window_trips_and_publishes() -> None:
    clock = ManualClock()
    sig = make_sig()
    events = sync(sig, reading(window=WindowCounts(10, 10)), clock.now(), resync=False)
    b = sig.breaker
    assert b.state(clock.now()) is BreakerState.OPEN
    assert b.origin == "local"
    assert b.open_until() == clock.now() + 10.0
    assert len(events) == 1
    ev = events[0]
    assert (ev.kind, ev.target_id, ev.trips) == (EventKind.TRIP, TID, 1)
    assert ev.duration_s == pytest.approx(10.0)
    assert ev.reason == "fleet failure rate 50% over 20 calls"
    view = sig.view(clock.now())
    assert view.fleet_error_rate == 0.5
    assert view.fleet_window_calls == 20
    assert view.window_calls == 0  # the local window is untouched


@pytest.mark.parametrize(
    "window",
    [
        WindowCounts(0, 19),  # 100 % failures but below min_calls
        WindowCounts(11, 10),  # 21 calls, 47.6 % < 50 %
        WindowCounts(100, 0),
        EMPTY,
    ],
)
def test_fleet_window_below_threshold_or_volume_does_not_trip(window: WindowCounts) -> None:
    clock = ManualClock()
    sig = make_sig()
    assert sync(sig, reading(window=window), clock.now(), resync=False) == []
    assert sig.breaker.state(clock.now()) is BreakerState.CLOSED
    view = sig.view(clock.now())
    assert view.fleet_error_rate == window.failure_rate
    assert view.fleet_window_calls == window.total


def test_fleet_window_reading_replaces_the_previous_one() -> None:
    sig = make_sig()
    sync(sig, reading(window=WindowCounts(3, 1)), 1000.0, resync=False)
    sync(sig, reading(window=WindowCounts(6, 2)), 1000.25, resync=False)
    view = sig.view(1000.25)
    assert view.fleet_error_rate == 0.25
    assert view.fleet_window_calls == 8


def test_fleet_window_does_not_retrip_an_open_or_half_open_breaker() -> None:
    clock = ManualClock()
    bad = WindowCounts(0, 40)
    sig = make_sig()
    assert sync(sig, reading(open_ms=5000, window=bad), clock.now(), resync=False) == []
    assert sig.breaker.open_until() == clock.now() + 5.0
    assert sig.breaker.trips == 0
    other = make_sig()
    assert sync(other, reading(half_open=True, window=bad), clock.now(), resync=False) == []
    assert other.breaker.state(clock.now()) is BreakerState.HALF_OPEN


def test_fleet_window_from_before_a_close_does_not_reopen_at_once() -> None:
    clock = ManualClock()
    sig = make_sig()
    apply_event(sig, trip(8.0), clock.now())  # 10 s open with -20 % jitter
    clock.advance(8.0)
    # A peer's two probes succeeded; the outage's failures are still inside the 10 s window.
    apply_event(sig, FleetEvent(EventKind.CLOSE, TID, reason="probes succeeded"), clock.now())
    assert sig.breaker.state(clock.now()) is BreakerState.CLOSED
    clock.advance(0.25)  # the next sync period
    events = sync(sig, reading(window=WindowCounts(2, 20)), clock.now(), resync=False)
    assert sig.breaker.state(clock.now()) is BreakerState.CLOSED
    assert events == []
