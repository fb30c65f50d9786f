"""A retry budget: retries may be at most `ratio` of requests over a window, plus a floor.

Finagle/Linkerd style. During a total outage every request fails, but the upstream load stays
bounded by (1 + ratio) x requests + floor, instead of multiplying by the attempt count.
Hedged attempts spend from the same budget. Pure, on an injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from health.clock import Clock, MonotonicClock
from health.declared import setting
from health.window import SlidingWindow


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """`resilience.budget_*`; a reload applies them all (`RetryBudget.settings`)."""

    ratio: float = setting(
        0.2,
        "retries and hedges may be at most this share of requests (+ the floor)",
        live=True,
        minimum=0,
        key="budget_ratio",
    )
    min_retries: int = setting(  # per window, so a quiet gateway can still fail over
        10,
        "retries always allowed per budget window",
        live=True,
        minimum=0,
        key="budget_min_retries",
    )
    window_s: float = setting(
        10.0, "the retry budget's window", live=True, positive=True, key="budget_window_s"
    )


class RetryBudget:
    def __init__(self, settings: BudgetSettings | None = None, clock: Clock | None = None) -> None:
        self._clock = clock or MonotonicClock()
        self.settings = settings or BudgetSettings()

    @property
    def settings(self) -> BudgetSettings:
        return self._settings

    @settings.setter
    def settings(self, s: BudgetSettings) -> None:
        """New settings apply from the next call; a new window starts empty (a reload that
        changes `window_s` forgets what the old window counted)."""
        old: BudgetSettings | None = getattr(self, "_settings", None)
        self._settings = s
        if old is None or old.window_s != s.window_s:
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
