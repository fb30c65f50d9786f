"""A circuit breaker per target: pybreaker's state machine, driven on an injected time.

closed --(N consecutive failures, or failure rate over the window)--> open
open   --(open time elapsed)--> half_open: exactly one probe at a time
half_open --(K probe successes)--> closed (traffic ramps up: slow start)
          --(a probe failure)--> open again, for as long as before

Recovery is detected on a steady cadence: a failed probe re-opens the breaker for the same
time as the trip that began the outage, so a 60 s outage is probed every `open_s` and the
target gets traffic back within about `open_s` of recovering. What lengthens the open time is
flapping: a trip soon (within `open_max_s`) after a recovery doubles it, up to `open_max_s`.
After a recovery the target's share of traffic ramps up over `slow_start_s` (`warmth`).

pybreaker (1.4) holds the state, the consecutive-failure and probe-success counters and the
transition listeners. Its call API is not used to guard the upstream call itself, because for
asyncio it gets things wrong (`call()` on a coroutine never records a failure, `call_async`
needs Tornado, `calling()` counts a cancellation as a failure, an excluded exception counts as
a success, and every concurrent caller passes in half-open). Instead this wrapper:

- records an attempt's *classified outcome* after the fact: success and failure go through
  `CircuitBreaker.call` with a trivial function; neutral outcomes (throttling, caller errors,
  the client leaving) never reach pybreaker at all;
- owns time: open periods are computed here (doubling on consecutive trips, capped, with
  jitter, so replicas do not probe in lockstep) against the injected clock, and pybreaker is
  moved to half-open when the period has elapsed;
- hands out exactly one probe slot in half-open (fleet-wide coordination is the store's job).

Every transition is also appended, as it happens, to the `TransitionLog` the breaker is
attached to (`attach`: the health store does it for each target it creates), so a reader that
comes later (the dashboard's `/admin/events`) still sees each one, not only the latest.
"""

from __future__ import annotations

import contextlib
import enum
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker

from health.settings import BreakerSettings
from health.window import WindowCounts


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: BreakerState.CLOSED,
    pybreaker.STATE_OPEN: BreakerState.OPEN,
    pybreaker.STATE_HALF_OPEN: BreakerState.HALF_OPEN,
}


class Admission(enum.Enum):
    """What the breaker says about sending one more request now."""

    ALLOW = "allow"
    PROBE = "probe"
    DENY = "deny"
    # Not for a new request while another candidate is admitted: the target has stopped
    # answering (`TargetSignals.hung`). `acquire` says no; the planner still sends a request
    # to it when nothing else would take it (it may only be slow).
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Transition:
    to: BreakerState
    at_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One breaker transition as the log keeps it."""

    target_id: str
    from_state: BreakerState
    to: BreakerState
    reason: str
    at_s: float  # on the breaker's (monotonic, injected) clock
    at: float  # wall-clock Unix seconds, for display: taken when the transition happened


class TransitionLog:
    """Every breaker transition of one health store, oldest first, bounded: the oldest go.

    Written by the breakers' pybreaker listener at the moment of each transition; read by
    `take`, which hands the entries over (the dashboard files them in its timeline) and forgets
    them, so a transition is kept in one place at a time. While nobody reads, the last
    `max_entries` are kept, for all targets of the store together (one store per gateway
    process). The default matches the dashboard timeline's own bound (500 events): keeping more
    unread would only have them dropped there on arrival.
    """

    def __init__(self, max_entries: int = 500, wall: Callable[[], float] = time.time) -> None:
        self._entries: deque[TransitionRecord] = deque(maxlen=max(1, max_entries))
        self.wall = wall
        self.dropped = 0  # transitions pushed out unread by the bound

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, record: TransitionRecord) -> None:
        if len(self._entries) == self._entries.maxlen:
            self.dropped += 1
        self._entries.append(record)

    def take(self) -> list[TransitionRecord]:
        """What the log holds, oldest first, and empty it."""
        taken = list(self._entries)
        self._entries.clear()
        return taken


class _ProviderFailure(Exception):
    """Stands for a classified provider failure inside pybreaker's bookkeeping."""


def _ok() -> None:
    return None


def _fail() -> None:
    raise _ProviderFailure


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: Breaker) -> None:
        self._owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        to = _FROM_PYBREAKER[new.name]
        self._owner._on_state_change(to if old is None else _FROM_PYBREAKER[old.name], to)


class Breaker:
    def __init__(self, settings: BreakerSettings, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng or random.Random()
        # pybreaker's state, as its listener last reported it (pybreaker starts closed and
        # tells its listeners every move): read on every request, without pybreaker's two
        # property hops and the name lookup.
        self._state = BreakerState.CLOSED
        self._cb = pybreaker.CircuitBreaker(
            fail_max=settings.consecutive_failures,
            reset_timeout=settings.open_s,  # informational: time is ours (see open_until)
            success_threshold=settings.half_open_successes,
            listeners=[_Listener(self)],
            throw_new_error_on_trip=False,
        )
        self._now = 0.0
        self._open_until = 0.0
        self._closed_at: float | None = None
        self._recovered_at: float | None = None  # when it last closed after being open
        self._trips = 0
        self._probe_in_flight = False
        # What the next transition is about, set just before we make pybreaker move.
        self._reason = ""
        self._forced_open_s: float | None = None
        self._forced_origin = "local"
        self.origin = "local"  # who opened it: "local" (our outcomes) or "fleet" (a peer)
        self.last_transition: Transition | None = None
        # When the transition under way actually became due, if earlier than `_now`.
        self._due_at: float | None = None
        self._log: TransitionLog | None = None
        self._target_id = ""

    def attach(self, log: TransitionLog, target_id: str) -> None:
        """Append every transition from now on to `log`, under `target_id`."""
        self._log = log
        self._target_id = target_id

    # -- reading -----------------------------------------------------------------------------

    def state(self, now_s: float) -> BreakerState:
        self._now = now_s
        state = self._state
        if state is BreakerState.OPEN and now_s >= self._open_until:
            self._reason = "open time elapsed"
            # The move to half-open happens lazily, on the first read after the open time ran
            # out, maybe much later: it is stamped with the time it became due (open since +
            # open time), not with the time of this read.
            self._due_at = self._open_until
            self._cb.half_open()
            state = BreakerState.HALF_OPEN
        return state

    @property
    def ramping(self) -> bool:
        """Whether a slow start may be under way (`warmth` can be below 1)."""
        return self._recovered_at is not None

    def warmth(self, now_s: float) -> float:
        """The share of traffic the target should get now: 1.0, or during the slow start
        after a recovery a ramp from 0.1 to 1.0. Admission (open, half-open) is `admit`'s
        business: a probe is never held back by the ramp."""
        recovered = self._recovered_at
        if recovered is None:
            return 1.0
        ramp_s = self._settings.slow_start_s
        elapsed = now_s - recovered
        if ramp_s <= 0 or elapsed >= ramp_s:
            self._recovered_at = None  # the ramp is over: the hot path is one check again
            return 1.0
        return 0.1 + 0.9 * max(0.0, elapsed) / ramp_s

    def open_until(self) -> float | None:
        return self._open_until if self._state is BreakerState.OPEN else None

    @property
    def trips(self) -> int:
        """Consecutive trips so far (the exponent of the open-time backoff)."""
        return self._trips

    @property
    def consecutive_failures(self) -> int:
        return self._cb.fail_counter

    def peek(self, now_s: float) -> Admission:
        """What `admit` would answer, without taking the probe slot."""
        state = self.state(now_s)
        if state is BreakerState.CLOSED:
            return Admission.ALLOW
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            return Admission.PROBE
        return Admission.DENY

    def admit(self, now_s: float) -> Admission:
        verdict = self.peek(now_s)
        if verdict is Admission.PROBE:
            self._probe_in_flight = True
        return verdict

    # -- outcomes ----------------------------------------------------------------------------

    def on_success(self, now_s: float, *, probe: bool) -> None:
        state = self.state(now_s)
        if probe:
            self._probe_in_flight = False
        if state is BreakerState.CLOSED:
            if self._cb.fail_counter:  # the hot path: nothing to reset, skip pybreaker's call
                self._cb.call(_ok)
        elif state is BreakerState.HALF_OPEN and probe:
            self._reason = "probes succeeded"
            self._cb.call(_ok)  # counts toward closing
        # A straggler that started before the trip proves nothing about now: ignored.

    def on_failure(self, now_s: float, window: WindowCounts, *, probe: bool) -> None:
        state = self.state(now_s)
        if probe:
            self._probe_in_flight = False
        s = self._settings
        if state is BreakerState.CLOSED:
            self._reason = f"{self._cb.fail_counter + 1} consecutive failures"
            self._record_failure()
            if (
                self.state(now_s) is BreakerState.CLOSED
                and window.total >= s.min_calls
                and window.failure_rate >= s.failure_rate
            ):
                self.trip(
                    now_s, f"failure rate {window.failure_rate:.0%} over {window.total} calls"
                )
        elif state is BreakerState.HALF_OPEN and probe:
            self._reason = "probe failed"
            self._record_failure()

    def on_neutral(self, *, probe: bool) -> None:
        """Throttled, caller error, client gone: not evidence either way. Frees a probe slot."""
        if probe:
            self._probe_in_flight = False

    def _record_failure(self) -> None:
        with contextlib.suppress(_ProviderFailure, pybreaker.CircuitBreakerError):
            self._cb.call(_fail)

    # -- forcing -----------------------------------------------------------------------------

    def trip(self, now_s: float, reason: str, *, open_s: float | None = None) -> None:
        """Open the breaker; `open_s` overrides the backoff (e.g. a misconfigured target)."""
        self._now = now_s
        self._reason = reason
        self._forced_open_s = open_s
        self._cb.open()

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
        self._reason = reason
        self._forced_open_s = open_s
        self._forced_origin = "fleet"
        self._cb.open()
        return True

    def force_close(self, now_s: float, reason: str) -> bool:
        """Adopt the fleet's verdict that the target recovered. Returns whether it changed."""
        if self.state(now_s) is BreakerState.CLOSED:
            return False
        self._reason = reason
        self._cb.close()
        return True

    # -- pybreaker's transitions -------------------------------------------------------------

    def _on_state_change(self, from_state: BreakerState, to: BreakerState) -> None:
        self._state = to
        now = self._now
        at_s = now if self._due_at is None else min(now, self._due_at)
        self._due_at = None
        self._probe_in_flight = False
        if to is BreakerState.OPEN:
            self._recovered_at = None
            # A trip from closed begins an outage: if it follows a recovery closely, the target
            # is flapping and stays away longer (trips count up). A failed probe is the same
            # outage going on: open again for as long as before, so probing stays steady.
            new_outage = from_state is BreakerState.CLOSED
            closed_at = self._closed_at
            if (
                new_outage
                and closed_at is not None
                and now - closed_at >= self._settings.open_max_s
            ):
                self._trips = 0  # it stayed healthy long enough: forget the old trips
            level = self._trips if new_outage else max(0, self._trips - 1)
            if self._forced_open_s is not None:
                open_s = self._forced_open_s
            else:
                s = self._settings
                base = min(s.open_max_s, s.open_s * (2 ** min(level, 30)))
                open_s = base * (1.0 + self._rng.uniform(-s.jitter, s.jitter))
            if self._forced_origin == "local" and (new_outage or self._trips == 0):
                self._trips += 1
            self._open_until = now + open_s
            self.origin = self._forced_origin
            self._forced_open_s = None
            self._forced_origin = "local"
        elif to is BreakerState.CLOSED:
            # Not a reset: a target that fails again soon after recovering (flapping) is
            # opened for longer; the count is forgotten once it has stayed closed a while.
            self._closed_at = now
            if from_state is not BreakerState.CLOSED:
                self._recovered_at = now  # traffic comes back gradually (slow start)
        reason = self._reason or to.value
        self.last_transition = Transition(to, at_s, reason)
        self._reason = ""
        if self._log is not None:
            wall = self._log.wall() - (now - at_s)
            self._log.append(TransitionRecord(self._target_id, from_state, to, reason, at_s, wall))
