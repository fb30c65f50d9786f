"""The permits one request holds: each is returned to the store exactly once, on every path.

An attempt's permit is normally released with the attempt's outcome (`release`). Whatever
happens in between — an exception of the gateway's own, a cancelled hedge task that never
started, the client leaving between the commit and the relay — `close()` at the end of the
request returns what is still held, as neutral: a leaked permit would count in
flight for ever and, for a half-open target, keep its only probe slot.
"""

from __future__ import annotations

import logging

from health.outcome import CLIENT_GONE, INTERNAL, Outcome
from health.store import HealthStore, Permit

log = logging.getLogger("turnout.permits")


class Permits:
    def __init__(self, store: HealthStore) -> None:
        self._store = store
        self._held: dict[int, Permit] = {}  # by identity: two permits for one target differ

    def acquire(self, target_id: str) -> Permit | None:
        permit = self._store.acquire(target_id)
        if permit is not None:
            self._held[id(permit)] = permit
        return permit

    def force_acquire(self, target_id: str) -> Permit:
        permit = self._store.force_acquire(target_id)
        self._held[id(permit)] = permit
        return permit

    def release(self, permit: Permit, outcome: Outcome) -> bool:
        """Return `permit` with its outcome; False (and nothing done) if it was returned."""
        if self._held.pop(id(permit), None) is None:
            return False
        self._store.release(permit, outcome)
        return True

    def __len__(self) -> int:
        return len(self._held)

    def close(self, cancelled: bool) -> None:
        """The request is over: whatever is still held goes back, neutral (client gone when
        the request was cancelled, else the gateway's own fault, logged)."""
        if not self._held:
            return
        left = list(self._held.values())
        if not cancelled:
            log.error("%d permit(s) still held at the end of a request", len(left))
        for permit in left:
            self.release(permit, CLIENT_GONE if cancelled else INTERNAL)
