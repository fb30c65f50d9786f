"""Per-target live signals, fed by classified outcomes, read as frozen `TargetHealth` views."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from health.breaker import Admission, Breaker, BreakerState, Transition
from health.ewma import PeakEwma, Reservoir
from health.outcome import Outcome, OutcomeKind
from health.settings import HealthSettings
from health.window import SlidingWindow, WindowCounts


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """A read-only view of one target's health at one instant (monotonic seconds)."""

    target_id: str
    state: BreakerState
    error_rate: float
    window_calls: int
    consecutive_failures: int
    latency_ms_p50: float | None
    latency_ms_ewma: float | None
    ttft_ms_p50: float | None
    ttft_ms_ewma: float | None
    in_flight: int
    throttled_for_s: float
    open_for_s: float
    misconfigured: bool
    last_transition: Transition | None
    ttft_ms_p95: float | None = None  # only in detailed views
    fleet_error_rate: float | None = None  # None: no fleet view (memory store, or Redis down)
    fleet_window_calls: int = 0
    misconfigured_reason: str = ""  # what the provider said, when misconfigured
    # How long requests have been waiting on it with nothing coming back (0: none waiting),
    # and the limit past which it is not answering (0: hang detection off).
    silent_s: float = 0.0
    hang_after_s: float = 0.0

    @property
    def available(self) -> bool:
        """Worth sending traffic to now (a half-open target takes a probe)."""
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        """Why the target cannot take traffic now, or None. The one rule, the store's
        admission's too: its breaker is open, it is throttled, or it has stopped answering
        (`TargetSignals.hung`: admission DEFER). A misconfigured target is open for
        `misconfigured_open_s`, then probed like any other (the key may be fixed)."""
        if self.state is BreakerState.OPEN:
            if self.misconfigured:
                why = self.misconfigured_reason or "rejected by the provider"
                return f"misconfigured ({why}; {self.open_for_s:.1f}s left)"
            return f"breaker open ({self.open_for_s:.1f}s left)"
        if self.throttled_for_s > 0:
            return f"throttled ({self.throttled_for_s:.1f}s left)"
        if self.silent_s > self.hang_after_s > 0 and self.state is BreakerState.CLOSED:
            return (
                f"not answering (requests waiting {self.silent_s:.1f}s with nothing back; "
                f"limit {self.hang_after_s:.1f}s)"
            )
        return None

    @staticmethod
    def unknown(target_id: str) -> TargetHealth:
        return TargetHealth(
            target_id,
            BreakerState.CLOSED,
            0.0,
            0,
            0,
            None,
            None,
            None,
            None,
            0,
            0.0,
            0.0,
            False,
            None,
        )


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000.0, 3)


class TargetSignals:
    """Mutable signals for one target. Not thread-safe: owned by one event loop."""

    def __init__(self, target_id: str, settings: HealthSettings, rng: random.Random) -> None:
        self.target_id = target_id
        self._settings = settings
        self.window = SlidingWindow(settings.window_s, settings.bucket_s)
        self.breaker = Breaker(settings.breaker, rng)
        self.latency = PeakEwma(settings.ewma_tau_s)
        self.ttft = PeakEwma(settings.ewma_tau_s)
        self.latency_samples = Reservoir()
        self.ttft_samples = Reservoir()
        self.in_flight = 0
        # Attempts started since the target last answered and still in flight, since when
        # (the first of them started; meaningful while `waiting` > 0), and the answer count
        # a permit was issued in (its `epoch`): an attempt older than the last answer is not
        # one of the waiting ones.
        self.waiting = 0
        self.waiting_since = 0.0
        self.epoch = 0
        self._hang = settings.hang.enabled
        # Below this much silence no limit can be passed: the hot path's one comparison.
        self._hang_floor_s = settings.hang.floor_s if self._hang else math.inf
        self.throttled_until = 0.0
        self._throttle_streak = 0
        self.misconfigured = False
        self.misconfigured_reason = ""
        self.fleet_window: WindowCounts | None = None  # set by a fleet store's reconciliation
        self.fleet_absent = 0  # readings in a row without the peer's open we hold (fleet_view)

    @property
    def settings(self) -> HealthSettings:
        return self._settings

    def admit(self, now_s: float) -> Admission:
        if now_s < self.throttled_until:
            return Admission.DENY
        return self._unless_hung(self.breaker.admit(now_s), now_s)

    def peek(self, now_s: float) -> Admission:
        if now_s < self.throttled_until:
            return Admission.DENY
        return self._unless_hung(self.breaker.peek(now_s), now_s)

    def _unless_hung(self, verdict: Admission, now_s: float) -> Admission:
        """DEFER instead of ALLOW while the target is not answering (`hung`); the floor check
        first, so the usual case costs one comparison."""
        if (
            self.waiting
            and now_s - self.waiting_since > self._hang_floor_s
            and verdict is Admission.ALLOW
            and self.hung(now_s)
        ):
            return Admission.DEFER
        return verdict

    # -- stopped answering -------------------------------------------------------------------

    def hang_after_s(self) -> float:
        """Silence past which the target is not answering: max(floor, factor x its TTFT
        peak-EWMA), the floor alone while it has no history; 0 when detection is off."""
        if not self._hang:
            return 0.0
        h = self._settings.hang
        usual = self.ttft.value
        return h.floor_s if usual is None else max(h.floor_s, h.factor * usual)

    def silent_s(self, now_s: float) -> float:
        """How long requests have been waiting on it with nothing coming back (0: none)."""
        return now_s - self.waiting_since if self.waiting else 0.0

    def hung(self, now_s: float) -> bool:
        """Requests have waited on it, without one answer, for longer than `hang_after_s`."""
        return self._hang and self.waiting > 0 and self.silent_s(now_s) > self.hang_after_s()

    def started(self, now_s: float) -> int:
        """An attempt was sent: counted in flight and waiting; returns the permit's epoch."""
        self.in_flight += 1
        if not self.waiting:
            self.waiting_since = now_s
        self.waiting += 1
        return self.epoch

    def heard(self) -> None:
        """Something came back from the target: nothing is waiting on it since then."""
        self.epoch += 1
        self.waiting = 0

    def ended(self, epoch: int, outcome: Outcome) -> None:
        """An attempt of `epoch` is over: out of flight, and an answer if it was one."""
        self.in_flight = max(0, self.in_flight - 1)
        if outcome.answered:
            self.heard()
        elif epoch == self.epoch and self.waiting:
            self.waiting -= 1  # it left unanswered (timed out, cancelled): no longer waiting

    def record(self, outcome: Outcome, now_s: float, *, probe: bool) -> None:
        kind = outcome.kind
        if outcome.latency_s is not None and kind is OutcomeKind.SUCCESS:
            self.latency.observe(outcome.latency_s, now_s)
            self.latency_samples.add(outcome.latency_s)
        if outcome.ttft_s is not None:
            self.ttft.observe(outcome.ttft_s, now_s)
            self.ttft_samples.add(outcome.ttft_s)
        if kind is OutcomeKind.SUCCESS:
            self.window.add(now_s, success=True)
            self._throttle_streak = 0
            self.misconfigured = False
            self.misconfigured_reason = ""
            self.breaker.on_success(now_s, probe=probe)
        elif kind is OutcomeKind.PROVIDER_FAILURE:
            self.window.add(now_s, success=False)
            self.breaker.on_failure(now_s, self.window.counts(now_s), probe=probe)
        elif kind is OutcomeKind.THROTTLED:
            self._throttle(outcome.retry_after_s, now_s)
            self.breaker.on_neutral(probe=probe)
        elif kind is OutcomeKind.MISCONFIGURED:
            self.misconfigured = True
            self.misconfigured_reason = f"status {outcome.status}: {outcome.detail}"
            self.breaker.on_neutral(probe=probe)
            self.breaker.trip(
                now_s,
                f"misconfigured ({self.misconfigured_reason})",
                open_s=self._settings.breaker.misconfigured_open_s,
            )
        else:
            self.breaker.on_neutral(probe=probe)

    def _throttle(self, retry_after_s: float | None, now_s: float) -> None:
        t = self._settings.throttle
        if retry_after_s is None:
            retry_after_s = min(t.max_s, t.default_s * (2 ** min(self._throttle_streak, 30)))
        retry_after_s = min(retry_after_s, t.retry_after_max_s)
        self._throttle_streak += 1
        self.throttled_until = max(self.throttled_until, now_s + retry_after_s)

    def plain(self, now_s: float) -> bool:
        """Nothing but numbers to report: breaker closed, not throttled or misconfigured, no
        request waiting past the hang floor. Its view then has no reason to be unavailable
        (`TargetHealth.why_unavailable`, the one rule): a policy that reads availability
        alone can take `TargetHealth.unknown` for it, built once (`MemoryStore.snapshot`)."""
        return (
            self.throttled_until <= now_s
            and not self.misconfigured
            and not (self.waiting and now_s - self.waiting_since > self._hang_floor_s)
            and self.breaker.state(now_s) is BreakerState.CLOSED
        )

    def view(self, now_s: float, *, detailed: bool = False) -> TargetHealth:
        """A frozen view; percentiles (a sort) only when `detailed`, i.e. off the hot path."""
        counts = self.window.counts(now_s)
        fleet = self.fleet_window
        open_until = self.breaker.open_until()
        state = self.breaker.state(now_s)
        silent_s = now_s - self.waiting_since if self.waiting else 0.0
        # The limit only matters past the floor (or to operators): skipped on the usual path.
        return TargetHealth(
            target_id=self.target_id,
            state=state,
            error_rate=counts.failure_rate,
            window_calls=counts.total,
            consecutive_failures=self.breaker.consecutive_failures,
            latency_ms_p50=_ms(self.latency_samples.percentile(0.5)) if detailed else None,
            latency_ms_ewma=_ms(self.latency.value),
            ttft_ms_p50=_ms(self.ttft_samples.percentile(0.5)) if detailed else None,
            ttft_ms_ewma=_ms(self.ttft.value),
            in_flight=self.in_flight,
            throttled_for_s=max(0.0, self.throttled_until - now_s),
            open_for_s=max(0.0, open_until - now_s) if open_until is not None else 0.0,
            misconfigured=self.misconfigured,
            last_transition=self.breaker.last_transition,
            ttft_ms_p95=_ms(self.ttft_samples.percentile(0.95)) if detailed else None,
            fleet_error_rate=None if fleet is None else fleet.failure_rate,
            fleet_window_calls=0 if fleet is None else fleet.total,
            misconfigured_reason=self.misconfigured_reason,
            silent_s=silent_s,
            hang_after_s=self.hang_after_s() if detailed or silent_s > self._hang_floor_s else 0.0,
        )
