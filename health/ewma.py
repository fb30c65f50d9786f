"""Latency estimators: a peak-sensitive EWMA and a small reservoir for percentiles."""

from __future__ import annotations

import math
from collections import deque


class PeakEwma:
    """Exponentially weighted moving average that jumps to a new peak at once.

    Like Finagle's/Linkerd's peak EWMA: a sample above the current value replaces it
    immediately (so a sudden slowdown counts at once); samples below decay it with a time
    constant `tau_s`, so recovery is gradual. Time is passed in explicitly.
    """

    __slots__ = ("_at", "_tau_s", "_value")

    def __init__(self, tau_s: float = 10.0) -> None:
        self._tau_s = tau_s
        self._value: float | None = None
        self._at = 0.0

    @property
    def value(self) -> float | None:
        return self._value

    def observe(self, sample: float, now_s: float) -> None:
        if self._value is None or sample > self._value:
            self._value = sample
        else:
            dt = max(0.0, now_s - self._at)
            w = math.exp(-dt / self._tau_s)
            self._value = self._value * w + sample * (1.0 - w)
        self._at = now_s


_P95_EVERY = 32


class Reservoir:
    """The last `size` samples, for percentiles shown to operators (`percentile` sorts) and
    a p95 cheap enough for the request path (`p95`: re-sorted once per `_P95_EVERY` samples)."""

    __slots__ = ("_added", "_p95", "_p95_at", "_samples")

    def __init__(self, size: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._added = 0  # samples ever added
        self._p95: float | None = None
        self._p95_at = 0  # `_added` when `_p95` was computed

    def add(self, sample: float) -> None:
        self._samples.append(sample)
        self._added += 1

    def p95(self) -> float | None:
        """The 0.95-quantile as of at most `_P95_EVERY` samples ago (sooner for the first
        few: it is recomputed once the samples have doubled, up to every 32): one sort of
        <= 256 floats per 32 samples, not one per read."""
        added = self._added
        at = self._p95_at
        if added != at and added - at >= min(_P95_EVERY, at):  # after 1, 2, 4, ... 32, 64, 96
            self._p95 = self.percentile(0.95)
            self._p95_at = added
        return self._p95

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0 < q <= 1) by nearest rank, or None with no samples."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
        return ordered[rank]
