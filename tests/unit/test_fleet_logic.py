"""Fleet health logic in virtual time: peers' events, reconciliation, the wire format, key names.

Pure: no sockets, no sleeping, no Redis. A `FleetReading` stands for what Redis held.
"""

from __future__ import annotations

import random

import orjson
import pytest

from health.breaker import Admission, BreakerState
from health.clock import ManualClock
from health.fleet_event import EventKind, FleetEvent, Keys
from health.fleet_view import FleetReading, apply_event, reconcile, trips_of
from health.outcome import classify_status
from health.settings import BreakerSettings, HealthSettings
from health.signals import TargetSignals
from health.window import WindowCounts

TID = "gpt-4o@openai"
NO_JITTER = BreakerSettings(jitter=0.0)  # open_s 10, min_calls 20, failure_rate 0.5
SETTINGS = HealthSettings(breaker=NO_JITTER)
EMPTY = WindowCounts(0, 0)


def make_sig(target_id: str = TID, seed: int = 1) -> TargetSignals:
    return TargetSignals(target_id, SETTINGS, random.Random(seed))


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


def trip(duration_s: float, trips: int = 1, reason: str = "outage") -> FleetEvent:
    return FleetEvent(EventKind.TRIP, TID, duration_s, trips, reason, "peer-1")


# -- a peer's events (pub/sub) -------------------------------------------------------------------


def test_peer_trip_opens_a_closed_breaker_for_exactly_its_duration() -> None:
    clock = ManualClock()
    sig = make_sig()
    apply_event(sig, trip(7.5, reason="5 consecutive failures"), clock.now())
    b = sig.breaker
    assert b.state(clock.now()) is BreakerState.OPEN
    assert b.open_until() == clock.now() + 7.5
    assert b.origin == "fleet"
    assert b.last_transition is not None
    assert b.last_transition.reason == "peer: 5 consecutive failures"
    assert sig.view(clock.now()).open_for_s == pytest.approx(7.5)
    assert not sig.view(clock.now()).available
    clock.advance(7.4)
    assert sig.peek(clock.now()) is Admission.DENY
    clock.advance(0.1)
    assert b.state(clock.now()) is BreakerState.HALF_OPEN
    assert sig.peek(clock.now()) is Admission.PROBE


def test_trip_is_a_duration_so_unrelated_clocks_agree() -> None:
    """Two replicas' monotonic clocks have nothing in common; the event carries no instant."""
    wire = trip(12.0).encode()
    assert set(orjson.loads(wire)) == {"k", "t", "d", "n", "why", "r"}
    for start in (1000.0, 5_000_000.0):
        sig = make_sig()
        event = FleetEvent.decode(wire)
        assert event is not None
        apply_event(sig, event, start)
        assert sig.breaker.open_until() == start + 12.0


def test_duplicate_or_late_trip_never_shortens_and_a_longer_one_extends() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    event = trip(10.0)
    apply_event(sig, event, clock.now())
    until = clock.now() + 10.0
    first = b.last_transition
    apply_event(sig, event, clock.now())  # the same message twice
    assert b.open_until() == until
    assert b.last_transition is first
    assert b.force_open(clock.now(), 10.0, 1, "again") is False

    clock.advance(3.0)
    apply_event(sig, trip(5.0), clock.now())  # a late copy: 2 s less than what is left
    assert b.open_until() == until
    apply_event(sig, trip(7.0), clock.now())  # exactly what is left
    assert b.open_until() == until
    assert b.state(clock.now()) is BreakerState.OPEN

    apply_event(sig, trip(12.0), clock.now())  # a longer one (a later trip elsewhere)
    assert b.open_until() == clock.now() + 12.0
    assert b.state(clock.now()) is BreakerState.OPEN
    assert b.last_transition is first  # extended, not re-opened


def test_peer_trip_adopts_the_trip_count_for_the_backoff_and_never_lowers_it() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    apply_event(sig, trip(10.0, trips=3), clock.now())
    assert b.trips == 3
    clock.advance(10.0)
    assert b.admit(clock.now()) is Admission.PROBE
    b.on_failure(clock.now(), WindowCounts(0, 1), probe=True)  # failed probe: 10 s * 2**3
    assert b.open_until() == clock.now() + 80.0
    assert b.trips == 4
    apply_event(sig, trip(1.0, trips=1), clock.now())
    assert b.trips == 4
    assert b.open_until() == clock.now() + 80.0


def test_peer_trip_reopens_a_half_open_breaker() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    b.trip(clock.now(), "local")
    clock.advance(10.0)
    assert b.admit(clock.now()) is Admission.PROBE  # our probe is in flight
    apply_event(sig, trip(6.0), clock.now())
    assert b.state(clock.now()) is BreakerState.OPEN
    assert b.open_until() == clock.now() + 6.0
    assert b.origin == "fleet"
    clock.advance(6.0)
    assert b.peek(clock.now()) is Admission.PROBE  # the slot is free again


def test_peer_close_closes_an_open_breaker_and_backoff_decays_once_healthy() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    for _ in range(5):
        b.on_failure(clock.now(), EMPTY, probe=False)
    for _ in range(2):  # two failed probes: the open time has doubled twice
        clock.advance(b.open_until() - clock.now())  # type: ignore[operator]
        assert b.admit(clock.now()) is Admission.PROBE
        b.on_failure(clock.now(), EMPTY, probe=True)
    assert b.trips == 3
    assert b.open_until() == clock.now() + 40.0
    apply_event(sig, FleetEvent(EventKind.CLOSE, TID, reason="probes succeeded"), clock.now())
    assert b.state(clock.now()) is BreakerState.CLOSED
    assert b.trips == 3  # remembered: a flapping target is opened for longer
    assert b.consecutive_failures == 0
    assert b.open_until() is None
    assert sig.peek(clock.now()) is Admission.ALLOW
    assert b.last_transition is not None
    assert b.last_transition.reason == "closed by a peer"
    clock.advance(120.0)  # healthy for open_max_s: the old trips are forgotten
    b.trip(clock.now(), "again")  # the next trip starts from the base open time
    assert b.open_until() == clock.now() + 10.0


def test_peer_close_closes_a_half_open_breaker_with_a_probe_in_flight() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    b.trip(clock.now(), "local")
    b.trip(clock.now(), "local")
    clock.advance(20.0)
    assert b.admit(clock.now()) is Admission.PROBE
    assert b.state(clock.now()) is BreakerState.HALF_OPEN
    apply_event(sig, FleetEvent(EventKind.CLOSE, TID), clock.now())
    assert b.state(clock.now()) is BreakerState.CLOSED
    assert b.trips > 0  # remembered until it has stayed closed for open_max_s
    assert sig.admit(clock.now()) is Admission.ALLOW


def test_peer_close_on_a_closed_breaker_changes_nothing() -> None:
    clock = ManualClock()
    sig = make_sig()
    apply_event(sig, FleetEvent(EventKind.CLOSE, TID), clock.now())
    assert sig.breaker.last_transition is None
    assert sig.breaker.force_close(clock.now(), "again") is False


def test_peer_throttle_extends_throttled_until_and_never_shortens_it() -> None:
    clock = ManualClock()
    sig = make_sig()
    t0 = clock.now()
    apply_event(sig, FleetEvent(EventKind.THROTTLE, TID, 5.0), t0)
    assert sig.throttled_until == t0 + 5.0
    assert sig.peek(t0) is Admission.DENY
    assert sig.view(t0).throttled_for_s == pytest.approx(5.0)
    apply_event(sig, FleetEvent(EventKind.THROTTLE, TID, 2.0), t0)
    assert sig.throttled_until == t0 + 5.0
    clock.advance(1.0)
    apply_event(sig, FleetEvent(EventKind.THROTTLE, TID, 3.0), clock.now())  # ends at t0 + 4
    assert sig.throttled_until == t0 + 5.0
    apply_event(sig, FleetEvent(EventKind.THROTTLE, TID, 9.0), clock.now())
    assert sig.throttled_until == t0 + 10.0
    assert sig.breaker.state(clock.now()) is BreakerState.CLOSED  # throttling is neutral
    assert sig.breaker.last_transition is None
    clock.advance(8.9)
    assert sig.peek(clock.now()) is Admission.DENY
    clock.advance(0.1)
    assert sig.peek(clock.now()) is Admission.ALLOW


def test_heartbeat_changes_nothing() -> None:
    sig = make_sig()
    apply_event(sig, FleetEvent(EventKind.HEARTBEAT, replica="peer-1"), 1000.0)
    assert sig.breaker.last_transition is None
    assert sig.throttled_until == 0.0
    assert sig.peek(1000.0) is Admission.ALLOW


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
    b.on_failure(clock.now(), WindowCounts(0, 1), probe=True)  # failed probe: 10 s * 2**3
    assert b.open_until() == clock.now() + 80.0


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


def test_reconcile_no_keys_closes_a_breaker_a_peer_opened() -> None:
    clock = ManualClock()
    sig = make_sig()
    apply_event(sig, trip(30.0, trips=2), clock.now())
    clock.advance(1.0)
    assert sync(sig, reading(), clock.now(), resync=False) == []
    b = sig.breaker
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


def test_without_resync_a_local_open_with_no_fleet_keys_closes() -> None:
    clock = ManualClock()
    sig = make_sig()
    b = sig.breaker
    b.trip(clock.now(), "local")
    b.trip(clock.now(), "local")
    clock.advance(1.0)
    assert sync(sig, reading(), clock.now(), resync=False) == []
    assert b.state(clock.now()) is BreakerState.CLOSED  # the fleet closed it
    assert b.trips > 0  # remembered until it has stayed closed for open_max_s
    assert sig.peek(clock.now()) is Admission.ALLOW


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


# -- the wire format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        FleetEvent(EventKind.TRIP, TID, 10.5, 3, "5 consecutive failures", "r-1"),
        FleetEvent(EventKind.CLOSE, TID, reason="probes succeeded", replica="r-2"),
        FleetEvent(EventKind.THROTTLE, "claude@anthropic", 0.25, replica="r-3"),
        FleetEvent(EventKind.HEARTBEAT, replica="r-4"),
        FleetEvent(EventKind.TRIP, "m:ü/ß@p", 0.001, 0, "état «critique»", ""),
    ],
)
def test_event_round_trips(event: FleetEvent) -> None:
    data = event.encode()
    assert isinstance(data, bytes)
    assert FleetEvent.decode(data) == event
    assert FleetEvent.decode(data.decode()) == event  # str payloads too


def test_encode_rounds_the_duration_to_the_millisecond() -> None:
    event = FleetEvent.decode(FleetEvent(EventKind.TRIP, TID, 1.23456).encode())
    assert event is not None
    assert event.duration_s == 1.235


def test_decode_defaults_and_rejects_out_of_range() -> None:
    assert FleetEvent.decode(b'{"k":"close","t":"x"}') == FleetEvent(EventKind.CLOSE, "x")
    assert FleetEvent.decode(b'{"k":"heartbeat"}') == FleetEvent(EventKind.HEARTBEAT)
    assert FleetEvent.decode(b'{"k":"close"}') is None  # no target: no phantom target
    assert FleetEvent.decode(b'{"k":"trip","t":"x","d":-5}') is None
    assert FleetEvent.decode(b'{"k":"trip","t":"x","d":1e308}') is None  # "open forever"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b'{"k":"trip"',  # truncated
        b"null",
        b"42",
        b'"trip"',
        b'["trip", "x", 10]',
        b"{}",  # no kind
        b'{"t":"x","d":10}',  # no kind
        b'{"k":"explode","t":"x"}',  # unknown kind
        b'{"k":"TRIP","t":"x"}',  # kinds are lower case
        b'{"k":null,"t":"x"}',
        b'{"k":1,"t":"x"}',
        b'{"k":["trip"],"t":"x"}',
        b'{"k":{"v":"trip"},"t":"x"}',
        b'{"k":"trip","t":"x","d":"ten"}',
        b'{"k":"trip","t":"x","d":[10]}',
        b'{"k":"trip","t":"x","d":{"s":10}}',
        b'{"k":"trip","t":"x","d":null}',
        b'{"k":"trip","t":"x","n":"three"}',
        b'{"k":"trip","t":"x","n":[3]}',
        b'{"k":"trip","t":"x","n":null}',
        b'{"k":"trip","t":"x","d":1e999}',  # out of range
    ],
)
def test_decode_returns_none_for_garbage(data: bytes) -> None:
    assert FleetEvent.decode(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b'{"k":"trip","t":null,"d":10}',
        b'{"k":"trip","t":7,"d":10}',
        b'{"k":"trip","t":["x"],"d":10}',
        b'{"k":"trip","t":"x","d":"inf"}',
        b'{"k":"trip","t":"x","d":"10"}',
        b'{"k":"trip","t":"x","d":true}',
    ],
)
def test_decode_rejects_wrongly_typed_fields(data: bytes) -> None:
    assert FleetEvent.decode(data) is None


# -- key names ---------------------------------------------------------------------------------------


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: the first non-empty `{...}`, else the key."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def all_keys(keys: Keys, target_id: str) -> list[str]:
    return [
        keys.open(target_id),
        keys.half_open(target_id),
        keys.throttle(target_id),
        keys.probe(target_id),
        keys.bucket(target_id, 1_700_000_000, "s"),
        keys.bucket(target_id, 1_700_000_000, "f"),
        keys.bucket(target_id, 1_700_000_001, "s"),
    ]


TARGETS = ["gpt-4o@openai", "claude-3.5:sonnet@anthropic", "m@p", "llama_3-70b@local.vllm"]
PREFIXES = ["turnout", "turnout2", "sy", "sy:a", "sy:a:b", "prod-eu"]


@pytest.mark.parametrize("prefix", ["turnout", "sy:a"])
@pytest.mark.parametrize("target_id", TARGETS)
def test_one_targets_keys_share_its_hash_tag_and_the_prefix(prefix: str, target_id: str) -> None:
    keys = Keys(prefix)
    names = all_keys(keys, target_id)
    assert len(set(names)) == len(names)
    for name in names:
        assert name.startswith(f"{prefix}:{{{target_id}}}:")
        assert hash_tag(name) == target_id


def test_default_prefix_and_channel() -> None:
    assert Keys().prefix == "turnout"
    assert Keys().channel == "turnout:events"
    assert Keys().open(TID) == "turnout:{gpt-4o@openai}:open"


def test_targets_never_share_keys() -> None:
    keys = Keys()
    sets = [set(all_keys(keys, t)) for t in TARGETS]
    assert sum(len(s) for s in sets) == len(set().union(*sets))
    assert len({hash_tag(keys.open(t)) for t in TARGETS}) == len(TARGETS)


def test_two_prefixes_never_collide() -> None:
    seen: dict[str, str] = {}
    for prefix in PREFIXES:
        keys = Keys(prefix)
        for name in [keys.channel] + [k for t in TARGETS for k in all_keys(keys, t)]:
            assert seen.setdefault(name, prefix) == prefix, (
                f"{name} under {prefix} and {seen[name]}"
            )
    channels = {Keys(p).channel for p in PREFIXES}
    assert len(channels) == len(PREFIXES)
