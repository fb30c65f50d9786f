"""Reconciliation: bringing one replica's view of a target in line with the fleet's.

Pure: it reads a `FleetReading` (what Redis held for a target) and adjusts the local signals;
it returns the events this replica must (re)publish. Tested in virtual time without Redis.
The rule is "worst of local and fleet": a peer's open or throttle is adopted, a local one is
kept until the fleet closes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from health.breaker import BreakerState
from health.fleet_event import EventKind, FleetEvent
from health.settings import BreakerSettings
from health.signals import TargetSignals
from health.window import WindowCounts


@dataclass(frozen=True, slots=True)
class FleetReading:
    target_id: str
    open_ms: int | None  # remaining open time (PTTL), None when no open key
    half_open: bool  # the fleet's half-open marker exists
    throttle_ms: int | None  # remaining throttle time, None when not throttled
    window: WindowCounts  # the fleet's counts over the window
    trips: int = 0  # consecutive trips so far (the open-time backoff exponent), from the marker


def trips_of(marker: object) -> int:
    """The trip count the half-open marker holds (bytes from Redis; junk or absent: 0)."""
    if not isinstance(marker, bytes | str | int):
        return 0
    try:
        return max(0, int(marker))
    except ValueError:
        return 0


def reconcile(
    sig: TargetSignals,
    reading: FleetReading,
    now_s: float,
    settings: BreakerSettings,
    *,
    resync: bool,
) -> list[FleetEvent]:
    """Apply `reading` to `sig`. With `resync` (Redis came back empty), re-publish local state."""
    out: list[FleetEvent] = []
    b = sig.breaker
    state = b.state(now_s)
    tid = reading.target_id
    if reading.open_ms is not None or reading.half_open:
        sig.fleet_absent = 0
    if reading.open_ms is not None and reading.open_ms > 0:
        b.force_open(now_s, reading.open_ms / 1000.0, reading.trips, "opened by a peer")
    elif reading.half_open:
        if state is BreakerState.CLOSED:
            # The fleet is probing this target: wait for its verdict, probe only with the lock.
            b.force_open(now_s, 0.0, reading.trips, "half-open in the fleet")
    elif state is not BreakerState.CLOSED:
        remaining = b.open_until()
        left = 0.0 if remaining is None else max(0.0, remaining - now_s)
        if b.origin == "local" and (resync or left > 0):
            # Our own open, with time left, is missing from Redis: Redis lost it (restarted
            # empty, a Sentinel failover to a replica that missed the write, a restore) - it
            # is not the fleet's verdict that the target recovered. Publish it again.
            out.append(FleetEvent(EventKind.TRIP, tid, left, b.trips, "resync"))
        elif not resync and (b.origin == "local" or left <= 0 or sig.fleet_absent >= 1):
            sig.fleet_absent = 0
            b.force_close(now_s, "closed by the fleet")
        else:
            # A peer's open, with time left, vanished: keep it one reading more, so that its
            # owner can re-publish it if Redis lost it (a close comes by pub/sub at once).
            sig.fleet_absent += 1
    if reading.throttle_ms is not None and reading.throttle_ms > 0:
        sig.throttled_until = max(sig.throttled_until, now_s + reading.throttle_ms / 1000.0)
    elif resync and sig.throttled_until - now_s > 0.05:
        out.append(FleetEvent(EventKind.THROTTLE, tid, sig.throttled_until - now_s))
    sig.fleet_window = reading.window
    w = reading.window
    last = b.last_transition
    # The fleet window still holds an outage's failures for a while after a recovery: they
    # are not new evidence, so they may not re-trip a breaker closed within the window.
    closed_recently = (
        last is not None
        and last.to is BreakerState.CLOSED
        and now_s - last.at_s < sig.settings.window_s
    )
    if (
        b.state(now_s) is BreakerState.CLOSED
        and not closed_recently
        and w.total >= settings.min_calls
        and w.failure_rate >= settings.failure_rate
    ):
        b.trip(now_s, f"fleet failure rate {w.failure_rate:.0%} over {w.total} calls")
        left = (b.open_until() or now_s) - now_s
        out.append(
            FleetEvent(
                EventKind.TRIP,
                tid,
                left,
                b.trips,
                b.last_transition.reason if b.last_transition else "",
            )
        )
    return out


def apply_event(sig: TargetSignals, event: FleetEvent, now_s: float) -> None:
    """Apply a peer's event (pub/sub). Idempotent; a late TRIP only extends, never shortens."""
    b = sig.breaker
    if event.kind is EventKind.TRIP:
        b.force_open(now_s, event.duration_s, event.trips, f"peer: {event.reason}".strip())
    elif event.kind is EventKind.CLOSE:
        b.force_close(now_s, "closed by a peer")
    elif event.kind is EventKind.THROTTLE:
        sig.throttled_until = max(sig.throttled_until, now_s + event.duration_s)
