"""An attempt is over: what it said is settled once, and everyone who learns from it is told.

    health (the permit goes back with the outcome: windows, breaker, in-flight, probe slot)
      -> listeners, in order: telemetry (span, metrics, the dashboard's timeline),
         the route's policy if it learns (adaptive)

The permit is the guard: an attempt settled a second time (a hedge loser that answered in the
same instant, a stream settled by its relay and again by the request's end) is not counted
twice, by anyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from gateway.resilience.permits import Permits
from gateway.telemetry.hub import Usage
from gateway.upstream.attempt import AttemptResult
from health.outcome import Outcome, OutcomeKind
from health.store import Permit
from policies.compose import learner
from policies.types import Observation, Policy


class Attempted(msgspec.Struct, frozen=True):
    """One attempt as the loop holds it, from its start until it is settled."""

    permit: Permit
    result: AttemptResult
    started_s: float  # loop time: the one clock of the request path (uvloop's is cached)
    panic: bool = False
    hedge: bool = False
    span: Any = None  # the attempt's CLIENT span, ended when its outcome is settled


class Listener(Protocol):
    def settled(
        self,
        span: Any,
        target_id: str,
        outcome: Outcome,
        duration_s: float,
        usage: Usage | None,
    ) -> None: ...


class Learning:
    """Tells a learning policy how each attempt went (a caller error or a neutral ending says
    nothing about the target, so it is not told)."""

    __slots__ = ("_observe",)

    def __init__(self, observe: Callable[[Observation], None]) -> None:
        self._observe = observe

    @classmethod
    def of(cls, policy: Policy | None) -> Learning | None:
        """A listener for `policy` if it learns, else None (nobody to tell)."""
        learn = None if policy is None else learner(policy)
        return None if learn is None else cls(learn)

    def settled(
        self,
        span: Any,
        target_id: str,
        outcome: Outcome,
        duration_s: float,
        usage: Usage | None,
    ) -> None:
        kind = outcome.kind
        if kind is OutcomeKind.SUCCESS or kind.fails_over:
            self._observe(Observation(target_id, kind is OutcomeKind.SUCCESS, duration_s))


class Settlement:
    """Settles one request's attempts: health first (exactly once), then the listeners."""

    __slots__ = ("_clock", "_listeners", "permits")

    def __init__(
        self, permits: Permits, listeners: tuple[Listener, ...], clock: Callable[[], float]
    ) -> None:
        self.permits = permits
        self._listeners = listeners
        self._clock = clock

    def settle(self, att: Attempted, outcome: Outcome) -> bool:
        """Settle `att` with `outcome`; False (nobody told) if it was settled already."""
        if not self.permits.release(att.permit, outcome):
            return False
        result = att.result
        usage = result.stream.usage if result.stream is not None else result.usage
        duration = self._clock() - att.started_s
        tid = att.permit.target_id
        for listener in self._listeners:
            listener.settled(att.span, tid, outcome, duration, usage)
        return True
