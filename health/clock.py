"""Clocks. Every time-dependent piece of health takes a `Clock` so it can run in virtual time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock in seconds."""

    def now(self) -> float: ...


class MonotonicClock:
    """The real clock: `time.monotonic()` itself (a C call, no Python frame per read)."""

    now = staticmethod(time.monotonic)


class ManualClock:
    """A clock that only moves when told to; for tests in virtual time."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self._now = start_s

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds
