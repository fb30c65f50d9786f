"""The fleet-wide half-open probe lock, from one replica's side.

In half-open only the replica holding `Keys.probe(target)` may probe. The winner keeps the
lock - renewed after each successful probe - until the breaker closes or a probe fails, so a
recovery costs `half_open_successes` probes from one replica whatever the fleet size. The
claim is idempotent (a lock that already holds our id is ours: a claim whose reply timed out
may still have been run by Redis later, and must not lock us out too). A close holds the lock
a few periods more, so that a peer that has not heard of it yet does not send one more probe;
a replica that shuts down gives its locks back.

This class only keeps the books and queues commands on a pipeline; the fleet store sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from health.breaker import Admission, BreakerState
from health.fleet_event import Keys

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
DEMAND_S = 2.0  # a request's wish for a probe is remembered this long


class ProbeLocks:
    def __init__(self, keys: Keys, replica_id: str, *, lock_s: float, period_s: float) -> None:
        self.keys = keys
        self.replica_id = replica_id
        self.lock_ms = int(lock_s * 1000)
        self.period_s = period_s
        self.held: set[str] = set()  # targets whose fleet probe lock we hold
        self._demand: dict[str, float] = {}  # target -> last time a request wanted a probe
        self._claimed_at: dict[str, float] = {}  # target -> last claim
        self._unlocks: list[str] = []
        self._renews: list[str] = []  # locks we keep for the next probe of a recovery

    def want(self, target_id: str, now: float) -> bool:
        """A request wants to probe `target_id` without the lock: remember it; True when a
        claim is due (the sync loop should wake)."""
        self._demand[target_id] = now
        return now - self._claimed_at.get(target_id, -1e9) >= self.period_s

    def probed(self, target_id: str, state: BreakerState) -> None:
        """A probe ended, leaving the breaker in `state`."""
        if state is BreakerState.HALF_OPEN and target_id in self.held:
            self._renews.append(target_id)  # more probes to make: keep the lock, renewed
        else:
            self.held.discard(target_id)
            if state is not BreakerState.CLOSED:  # a close holds the lock itself (hold)
                self._unlocks.append(target_id)

    @property
    def pending(self) -> bool:
        return bool(self._unlocks or self._renews)

    def hold(self, pipe: Any, target_id: str) -> None:
        """A recovery closed: the lock outlives it by 4 periods (no needless last probe)."""
        pipe.set(self.keys.probe(target_id), self.replica_id, px=max(1, int(4000 * self.period_s)))

    def queue_flush(self, pipe: Any, *, closing: bool) -> list[str]:
        """Queue the unlocks and renewals due (every lock, when `closing`): the renewed
        targets, whose replies come last (give them to `settle_renewals`)."""
        unlocks, self._unlocks = self._unlocks, []
        renews, self._renews = self._renews, []
        # Only locks still held: a recovery that closed since must not get its lock renewed.
        renews = [t for t in dict.fromkeys(renews) if t in self.held]
        if closing:  # a lock kept by a replica that is going away would block probing
            unlocks += [t for t in self.held if t not in unlocks]
            self.held.clear()
            renews = []
        for tid in unlocks:
            pipe.eval(UNLOCK, 1, self.keys.probe(tid), self.replica_id)
        for tid in renews:
            pipe.eval(CLAIM, 1, self.keys.probe(tid), self.replica_id, self.lock_ms)
        return renews

    def settle_renewals(self, renews: Sequence[str], replies: Sequence[object]) -> None:
        for tid, still_ours in zip(renews, replies, strict=True):
            if not still_ours:  # it expired and another replica took it: its turn now
                self.held.discard(tid)

    def claimable(self, now: float, admission: Callable[[str], Admission]) -> list[str]:
        """Half-open targets that requests want, whose lock we may try for (once a period)."""
        self._demand = {t: at for t, at in self._demand.items() if now - at < DEMAND_S}
        return [
            tid
            for tid in self._demand
            if tid not in self.held
            and now - self._claimed_at.get(tid, -1e9) >= self.period_s
            and admission(tid) is Admission.PROBE
        ]

    def queue_claims(self, pipe: Any, wanted: Sequence[str], now: float) -> None:
        for tid in wanted:
            self._claimed_at[tid] = now
            pipe.eval(CLAIM, 1, self.keys.probe(tid), self.replica_id, self.lock_ms)

    def settle_claims(self, wanted: Sequence[str], replies: Sequence[object]) -> None:
        for tid, won in zip(wanted, replies, strict=True):
            if won:
                self.held.add(tid)
