"""A retry budget: retries may be at most `ratio` of requests over a window, plus a floor.

Finagle/Linkerd style. During a total outage every request fails, but the upstream load stays
bounded by (1 + ratio) x requests + floor, instead of multiplying by the attempt count.
Hedged attempts spend from the same budget. Pure, on an injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from health.clock import Clock, MonotonicClock
from health.window import SlidingWindow


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    ratio: float = 0.2
    min_retries: int = 10  # per window, so a quiet gateway can still fail over
    window_s: float = 10.0


class RetryBudget:
    def __init__(self, settings: BudgetSettings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or BudgetSettings()
        self._clock = clock or MonotonicClock()
        s = self.settings
        # Reuse the sliding window: "success" = a request, "failure" = a retry spent.
        self._window = SlidingWindow(s.window_s, min(1.0, s.window_s))

    def on_request(self) -> None:
        self._window.add(self._clock.now(), success=True)

    def try_spend(self) -> bool:
        """Take one retry (or hedge) from the budget; False when it is exhausted."""
        now = self._clock.now()
        counts = self._window.counts(now)
        allowed = self.settings.min_retries + self.settings.ratio * counts.successes
        if counts.failures + 1 > allowed:
            return False
        self._window.add(now, success=False)
        return True

    def left(self) -> float:
        counts = self._window.counts(self._clock.now())
        allowed = self.settings.min_retries + self.settings.ratio * counts.successes
        return max(0.0, allowed - counts.failures)
