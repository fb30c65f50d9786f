"""A circuit breaker as a pure state machine on an injected time.

closed --(N consecutive failures, or failure rate over the window)--> open
open   --(open time elapsed)--> half_open: exactly one probe at a time
half_open --(K probe successes)--> closed;  --(a probe failure)--> open, for longer

Neutral outcomes (throttling, caller errors, the client going away) never move the state;
a neutral probe just frees the probe slot. Consecutive trips double the open time (capped),
with jitter so a fleet does not probe in lockstep.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from health.settings import BreakerSettings
from health.window import WindowCounts


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission(enum.Enum):
    """What the breaker says about sending one more request now."""

    ALLOW = "allow"
    PROBE = "probe"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Transition:
    to: BreakerState
    at_s: float
    reason: str


class Breaker:
    __slots__ = (
        "_open_until",
        "_probe_in_flight",
        "_probe_successes",
        "_rng",
        "_settings",
        "_state",
        "_trips",
        "consecutive_failures",
        "last_transition",
        "origin",
    )

    def __init__(self, settings: BreakerSettings, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng or random.Random()
        self._state = BreakerState.CLOSED
        self._open_until = 0.0
        self._trips = 0
        self._probe_in_flight = False
        self._probe_successes = 0
        self.consecutive_failures = 0
        self.last_transition: Transition | None = None
        self.origin = "local"  # who opened it: "local" (our outcomes) or "fleet" (a peer)

    def state(self, now_s: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now_s >= self._open_until:
            self._move(BreakerState.HALF_OPEN, now_s, "open time elapsed")
        return self._state

    def open_until(self) -> float | None:
        return self._open_until if self._state is BreakerState.OPEN else None

    def peek(self, now_s: float) -> Admission:
        """What `admit` would answer, without taking the probe slot."""
        state = self.state(now_s)
        if state is BreakerState.CLOSED:
            return Admission.ALLOW
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            return Admission.PROBE
        return Admission.DENY

    def admit(self, now_s: float) -> Admission:
        state = self.state(now_s)
        if state is BreakerState.CLOSED:
            return Admission.ALLOW
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return Admission.PROBE
        return Admission.DENY

    def on_success(self, now_s: float, *, probe: bool) -> None:
        self.consecutive_failures = 0
        if probe:
            self._probe_in_flight = False
        if self.state(now_s) is BreakerState.HALF_OPEN and probe:
            self._probe_successes += 1
            if self._probe_successes >= self._settings.half_open_successes:
                self._trips = 0
                self._move(BreakerState.CLOSED, now_s, "probes succeeded")

    def on_failure(self, now_s: float, window: WindowCounts, *, probe: bool) -> None:
        self.consecutive_failures += 1
        if probe:
            self._probe_in_flight = False
        state = self.state(now_s)
        s = self._settings
        if state is BreakerState.HALF_OPEN and probe:
            self.trip(now_s, "probe failed")
        elif state is BreakerState.CLOSED:
            if self.consecutive_failures >= s.consecutive_failures:
                self.trip(now_s, f"{self.consecutive_failures} consecutive failures")
            elif window.total >= s.min_calls and window.failure_rate >= s.failure_rate:
                self.trip(
                    now_s, f"failure rate {window.failure_rate:.0%} over {window.total} calls"
                )

    def on_neutral(self, *, probe: bool) -> None:
        if probe:
            self._probe_in_flight = False

    @property
    def trips(self) -> int:
        """Consecutive trips so far (the exponent of the open-time backoff)."""
        return self._trips

    def force_open(self, now_s: float, open_s: float, trips: int, reason: str) -> bool:
        """Adopt a peer's trip: open until `now_s + open_s` unless already open longer.

        Returns whether anything changed. Idempotent, so a duplicate or late event is harmless.
        """
        until = now_s + open_s
        self._trips = max(self._trips, trips)
        if self.state(now_s) is BreakerState.OPEN:
            if until <= self._open_until + 0.05:
                return False
            self._open_until = until
            return True
        self._open_until = until
        self._move(BreakerState.OPEN, now_s, reason)
        self.origin = "fleet"
        return True

    def force_close(self, now_s: float, reason: str) -> bool:
        """Adopt the fleet's verdict that the target recovered. Returns whether it changed."""
        if self.state(now_s) is BreakerState.CLOSED:
            return False
        self._trips = 0
        self.consecutive_failures = 0
        self._move(BreakerState.CLOSED, now_s, reason)
        return True

    def trip(self, now_s: float, reason: str, *, open_s: float | None = None) -> None:
        """Open the breaker; `open_s` overrides the backoff (e.g. a misconfigured target)."""
        s = self._settings
        if open_s is None:
            base = min(s.open_max_s, s.open_s * (2 ** min(self._trips, 30)))
            open_s = base * (1.0 + self._rng.uniform(-s.jitter, s.jitter))
        self._trips += 1
        self._open_until = now_s + open_s
        self._move(BreakerState.OPEN, now_s, reason)
        self.origin = "local"

    def _move(self, to: BreakerState, now_s: float, reason: str) -> None:
        self._state = to
        self._probe_in_flight = False
        self._probe_successes = 0
        self.last_transition = Transition(to, now_s, reason)
