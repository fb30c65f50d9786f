"""A sliding window of success/failure counts in fixed-width buckets (1 s over 10 s by default)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowCounts:
    successes: int
    failures: int

    @property
    def total(self) -> int:
        return self.successes + self.failures

    @property
    def failure_rate(self) -> float:
        return self.failures / self.total if self.total else 0.0


class SlidingWindow:
    """Counts over the last `window_s` seconds, in buckets of `bucket_s` seconds.

    Time is passed in explicitly (monotonic seconds), so the window runs in virtual time.
    """

    __slots__ = ("_bucket_s", "_epochs", "_failures", "_n", "_successes")

    def __init__(self, window_s: float = 10.0, bucket_s: float = 1.0) -> None:
        if window_s <= 0 or bucket_s <= 0 or bucket_s > window_s:
            raise ValueError("need 0 < bucket_s <= window_s")
        self._bucket_s = bucket_s
        self._n = max(1, round(window_s / bucket_s))
        self._epochs = [-1] * self._n
        self._successes = [0] * self._n
        self._failures = [0] * self._n

    def _slot(self, now_s: float) -> int:
        epoch = int(now_s // self._bucket_s)
        i = epoch % self._n
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._successes[i] = 0
            self._failures[i] = 0
        return i

    def add(self, now_s: float, *, success: bool) -> None:
        i = self._slot(now_s)
        if success:
            self._successes[i] += 1
        else:
            self._failures[i] += 1

    def counts(self, now_s: float) -> WindowCounts:
        current = int(now_s // self._bucket_s)
        oldest = current - self._n + 1
        s = f = 0
        for i in range(self._n):
            if oldest <= self._epochs[i] <= current:
                s += self._successes[i]
                f += self._failures[i]
        return WindowCounts(s, f)
