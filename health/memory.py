"""The local, in-memory health store: the embedded default, and the fleet store's local view."""

from __future__ import annotations

import random
from collections.abc import Iterable

from health.breaker import Admission, TransitionLog
from health.clock import Clock, MonotonicClock
from health.learned import Book, Space
from health.outcome import Outcome, OutcomeKind
from health.settings import HealthSettings
from health.signals import TargetHealth, TargetSignals
from health.store import HealthSnapshot, Permit, StoreStatus


class MemoryStore:
    """Health kept in this process only. Keyed by target id, so it survives config reloads."""

    def __init__(
        self,
        settings: HealthSettings | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        shared_learning: bool = False,
    ) -> None:
        self._settings = settings or HealthSettings()
        self._clock = clock or MonotonicClock()
        self._rng = rng or random.Random()
        self._targets: dict[str, TargetSignals] = {}
        self._idle_views: dict[str, TargetHealth] = {}
        self.book = Book(shared=shared_learning)  # what learning policies learned, per route
        # Every breaker transition of every target, as it happens (the dashboard's source).
        self.transitions = TransitionLog()

    def signals(self, target_id: str) -> TargetSignals:
        sig = self._targets.get(target_id)
        if sig is None:
            sig = self._targets[target_id] = TargetSignals(target_id, self._settings, self._rng)
            sig.breaker.attach(self.transitions, target_id)
        return sig

    def track(self, target_ids: Iterable[str]) -> None:
        """Make sure these targets have signals (a fleet store reconciles every tracked one)."""
        for tid in target_ids:
            self.signals(tid)

    def target_ids(self) -> list[str]:
        return list(self._targets)

    def snapshot(
        self, target_ids: Iterable[str], *, detailed: bool = False, availability: bool = False
    ) -> HealthSnapshot:
        now = self._clock.now()
        out: dict[str, TargetHealth] = {}
        for tid in target_ids:
            sig = self._targets.get(tid)
            if sig is None or (availability and sig.plain(now)):
                out[tid] = self._idle(tid)
            else:
                out[tid] = sig.view(now, detailed=detailed)
        return out

    def plain(self, target_ids: Iterable[str]) -> bool:
        now = self._clock.now()
        targets = self._targets
        for tid in target_ids:
            sig = targets.get(tid)
            if sig is not None and not sig.plain(now):
                return False
        return True

    def _idle(self, target_id: str) -> TargetHealth:
        """`TargetHealth.unknown(target_id)`, built once per target (a frozen value)."""
        view = self._idle_views.get(target_id)
        if view is None:
            view = self._idle_views[target_id] = TargetHealth.unknown(target_id)
        return view

    def admission(self, target_id: str) -> Admission:
        sig = self._targets.get(target_id)
        if sig is None:
            return Admission.ALLOW
        return sig.peek(self._clock.now())

    def warmth(self, target_id: str) -> float:
        sig = self._targets.get(target_id)
        if sig is None or not sig.breaker.ramping:
            return 1.0  # the usual case: no clock read
        return sig.breaker.warmth(self._clock.now())

    def acquire(self, target_id: str) -> Permit | None:
        now = self._clock.now()
        sig = self.signals(target_id)
        verdict = sig.admit(now)
        if verdict is Admission.DENY or verdict is Admission.DEFER:
            return None
        sig.in_flight += 1  # `TargetSignals.started`, inlined: the hot path
        if not sig.waiting:
            sig.waiting_since = now
        sig.waiting += 1
        return Permit(target_id, verdict is Admission.PROBE, sig.epoch)

    def force_acquire(self, target_id: str) -> Permit:
        """A permit regardless of the breaker: the panic attempt when every candidate is out,
        or the last resort on a target that is not answering."""
        sig = self.signals(target_id)
        return Permit(target_id, False, sig.started(self._clock.now()))

    def release(self, permit: Permit, outcome: Outcome) -> None:
        sig = self.signals(permit.target_id)
        if outcome.kind is OutcomeKind.SUCCESS:  # `TargetSignals.ended`, inlined: the hot path
            sig.in_flight = max(0, sig.in_flight - 1)
            sig.epoch += 1
            sig.waiting = 0
        else:
            sig.ended(permit.epoch, outcome)
        sig.record(outcome, self._clock.now(), probe=permit.probe)

    def heard(self, target_id: str) -> None:
        sig = self._targets.get(target_id)
        if sig is not None:
            sig.heard()

    def first_token_p95_s(self, target_id: str) -> float | None:
        sig = self._targets.get(target_id)
        return None if sig is None else sig.ttft_samples.p95()

    def learned(self, space: str) -> Space:
        return self.book.space(space)

    def retain_learned(self, spaces: Iterable[str]) -> None:
        self.book.retain(spaces)

    def status(self) -> StoreStatus:
        return StoreStatus(backend="memory", degraded=False)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
