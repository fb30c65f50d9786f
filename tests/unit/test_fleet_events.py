"""A peer's events, as pub/sub delivers them (`apply_event`): TRIP opens the local breaker for
a duration (never shortening one, adopting the trip count), CLOSE closes it, THROTTLE extends
the throttle, HEARTBEAT changes nothing.

Pure, in virtual time: no sockets, no sleeping, no Redis.
"""

from __future__ import annotations

import orjson
import pytest

from health.breaker import Admission, BreakerState
from health.clock import ManualClock
from health.fleet_event import EventKind, FleetEvent
from health.fleet_view import apply_event
from health.window import WindowCounts
from tests.unit.fleet import EMPTY, TID, make_sig, trip


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
    # A failed probe goes on with the peer's outage at its level (the third trip: 10 s * 2**2),
    # it does not count a trip of its own (before issue 14 it doubled again, to 80 s).
    b.on_failure(clock.now(), WindowCounts(0, 1), probe=True)
    assert b.open_until() == clock.now() + 40.0
    assert b.trips == 3
    apply_event(sig, trip(1.0, trips=1), clock.now())
    assert b.trips == 3
    assert b.open_until() == clock.now() + 40.0


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
    for _ in range(2):  # two failed probes: the same outage, probed every open_s
        clock.advance(b.open_until() - clock.now())  # type: ignore[operator]
        assert b.admit(clock.now()) is Admission.PROBE
        b.on_failure(clock.now(), EMPTY, probe=True)
    assert b.trips == 1
    assert b.open_until() == clock.now() + 10.0
    apply_event(sig, FleetEvent(EventKind.CLOSE, TID, reason="probes succeeded"), clock.now())
    assert b.state(clock.now()) is BreakerState.CLOSED
    assert b.trips == 1  # remembered: a flapping target is opened for longer
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
