"""The health store interface: what the gateway needs from live health, local or fleet-wide.

The request path only calls the synchronous methods, which read and write memory. A fleet
store (Redis) does its network I/O in background tasks started by `start()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec

from health.breaker import Admission, TransitionLog
from health.learned import Space
from health.outcome import Outcome
from health.signals import TargetHealth

HealthSnapshot = Mapping[str, TargetHealth]
"""Target id -> view, read once per request and handed to policies."""


class Permit(msgspec.Struct, frozen=True, gc=False):
    """Permission to send one attempt to a target; returned to the store with the outcome."""

    target_id: str
    probe: bool
    epoch: int = 0  # the target's answer count when it was issued (`TargetSignals.epoch`)


@dataclass(frozen=True, slots=True)
class StoreStatus:
    backend: str
    degraded: bool
    detail: str = ""


class HealthStore(Protocol):
    @property
    def transitions(self) -> TransitionLog:
        """Every breaker transition of this store's targets, as it happened (bounded)."""
        ...

    def track(self, target_ids: Iterable[str]) -> None:
        """Targets the config knows; a fleet store keeps them in sync even before traffic."""
        ...

    def snapshot(
        self, target_ids: Iterable[str], *, detailed: bool = False, availability: bool = False
    ) -> HealthSnapshot:
        """Views of these targets now (unknown targets read as healthy and idle); with
        `detailed`, percentiles too (a sort: off the hot path). With `availability`, for a
        reader of availability alone: an available target may read as idle (no numbers),
        an unavailable one always has its full view."""
        ...

    def acquire(self, target_id: str) -> Permit | None:
        """A permit to send one attempt now, or None when the breaker says no."""
        ...

    def force_acquire(self, target_id: str) -> Permit:
        """A permit regardless of the breaker (the panic attempt); still counted in flight."""
        ...

    def plain(self, target_ids: Iterable[str]) -> bool:
        """Every one of these targets has nothing to report but numbers now (unknown ones
        too): none has a reason to be unavailable (`TargetSignals.plain`, the one rule)."""
        ...

    def admission(self, target_id: str) -> Admission:
        """What `acquire` would answer, without taking a probe slot."""
        ...

    def warmth(self, target_id: str) -> float:
        """The share of traffic the target should get now: 1.0, less while it ramps up after
        a recovery (slow start; `health.breaker`)."""
        ...

    def release(self, permit: Permit, outcome: Outcome) -> None:
        """Record the attempt's outcome and free its in-flight slot. Call exactly once."""
        ...

    def heard(self, target_id: str) -> None:
        """Something came back from the target before its attempt is released (a stream's
        first output event): it is answering."""
        ...

    def first_token_p95_s(self, target_id: str) -> float | None:
        """The target's recent p95 time to first token in seconds (None: no samples), cheap
        enough for every attempt (re-sorted once per 32 samples)."""
        ...

    def learned(self, space: str) -> Space:
        """What learning policies learned for one route (`space`: its key), per target. Read
        and written in memory; a fleet store shares it with every replica in the background."""
        ...

    def retain_learned(self, spaces: Iterable[str]) -> None:
        """Drop every learned space but these (called after a config swap)."""
        ...

    def status(self) -> StoreStatus: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
