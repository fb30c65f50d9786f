"""What replicas tell each other through Redis, and how it is named there."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import orjson

MAX_DURATION_S = 86400.0  # longer than any open or throttle time a peer may ask for


class EventKind(enum.Enum):
    TRIP = "trip"  # a target's breaker opened; duration_s = how long it stays open
    CLOSE = "close"  # a target recovered (its probes succeeded)
    THROTTLE = "throttle"  # a target said 429; duration_s = Retry-After
    HEARTBEAT = "heartbeat"  # sent by replicas before issue 18 (PING now): read and ignored


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """One state change. Durations, not timestamps, so replicas' clock skew cannot stretch them.

    Applying an event is idempotent: receiving it twice, or late, is harmless.
    """

    kind: EventKind
    target_id: str = ""
    duration_s: float = 0.0
    trips: int = 0
    reason: str = ""
    replica: str = ""

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "k": self.kind.value,
                "t": self.target_id,
                "d": round(self.duration_s, 3),
                "n": self.trips,
                "why": self.reason,
                "r": self.replica,
            }
        )

    @staticmethod
    def decode(data: bytes | str) -> FleetEvent | None:
        """Parse a message; None for anything malformed or out of range (a bad message is
        dropped, never fatal: no infinite durations, no phantom targets)."""
        try:
            obj = orjson.loads(data)
            kind = EventKind(obj["k"])
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            return None
        target = obj.get("t", "")
        duration = obj.get("d", 0.0)
        trips = obj.get("n", 0)
        reason = obj.get("why", "")
        replica = obj.get("r", "")
        if not all(isinstance(v, str) for v in (target, reason, replica)):
            return None
        if kind is not EventKind.HEARTBEAT and not target:
            return None
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            return None
        if not 0.0 <= duration <= MAX_DURATION_S:  # also rejects NaN
            return None
        if isinstance(trips, bool) or not isinstance(trips, int) or not 0 <= trips <= 64:
            return None
        return FleetEvent(kind, target, float(duration), trips, reason, replica)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under a prefix. `{fleet}` is a hash tag: the state and the window share one
    Cluster slot, so one script may read them together; a probe lock is in its target's slot."""

    prefix: str = "turnout"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:events"

    @property
    def state(self) -> str:
        """The hash of every target's breaker record (fleet_sync)."""
        return f"{self.prefix}:{{fleet}}:state"

    @property
    def meta(self) -> str:
        """Hash: `epoch` (named by the first replica to find it missing), `v` (state version)."""
        return f"{self.prefix}:{{fleet}}:meta"

    @property
    def changes(self) -> str:
        """Sorted set: target -> the state version of its last change."""
        return f"{self.prefix}:{{fleet}}:changes"

    def window(self, epoch: int) -> str:
        """One bucket of the fleet's error-rate window: fields `target|s`, `target|f`."""
        return f"{self.prefix}:{{fleet}}:w:{epoch}"

    def probe(self, target_id: str) -> str:
        return f"{self.prefix}:{{{target_id}}}:probe"

    def learned(self, space: str) -> str:
        """One hash per learning route: `{target}|s` and `{target}|f` fields."""
        return f"{self.prefix}:learned:{{{space}}}"
