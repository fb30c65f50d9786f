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


class Reservoir:
    """The last `size` samples, for percentiles shown to operators (not used on the hot path)."""

    __slots__ = ("_samples",)

    def __init__(self, size: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, sample: float) -> None:
        self._samples.append(sample)

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0 < q <= 1) by nearest rank, or None with no samples."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
        return ordered[rank]
