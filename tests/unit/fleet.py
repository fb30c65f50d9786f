"""What the fleet logic tests (`tests/unit/test_fleet_*.py`) build: one target's signals with
a jitter-free breaker, and a peer's TRIP event for it.

Pure: no sockets, no sleeping, no Redis.
"""

from __future__ import annotations

import random

from health.fleet_event import EventKind, FleetEvent
from health.settings import BreakerSettings, HealthSettings
from health.signals import TargetSignals
from health.window import WindowCounts

TID = "gpt-4o@openai"
NO_JITTER = BreakerSettings(jitter=0.0)  # open_s 10, min_calls 20, failure_rate 0.5
SETTINGS = HealthSettings(breaker=NO_JITTER)
EMPTY = WindowCounts(0, 0)


def make_sig(target_id: str = TID, seed: int = 1) -> TargetSignals:
    return TargetSignals(target_id, SETTINGS, random.Random(seed))


def trip(duration_s: float, trips: int = 1, reason: str = "outage") -> FleetEvent:
    return FleetEvent(EventKind.TRIP, TID, duration_s, trips, reason, "peer-1")
