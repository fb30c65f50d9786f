"""Phase 1, propagation: how long a trip on one replica takes to reach its peers.

Three in-process FleetStore replicas on one Redis (`sync_period_s` 0.25), with pub/sub on and
off. For each of N trips a fresh target (tracked by every replica from the start) is tripped
on one replica (one provider failure, `consecutive_failures` 1, open 60 s, no jitter), taking
turns; every peer's `snapshot()` is polled every 1 ms until it says OPEN, for at most
`timeout_s`. Times are from the failure's `release()` to the peer's first OPEN reading; a peer
that never said OPEN in time is counted as missed, not timed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from health.breaker import BreakerState
from ops.bench.fleet_common import close_fleet, health, ms, start_fleet, state, table, trip
from ops.bench.stats import percentile


@dataclass(frozen=True, slots=True)
class PropagationResult:
    mode: str  # "pubsub", "reconcile" (pubsub off), or what the caller names it
    replicas: int
    trips: int
    samples: int  # peer observations timed
    missed: int  # peers that never saw a trip within timeout_s
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    sync_period_s: float


async def propagation(
    url: str,
    *,
    trips: int = 10,
    replicas: int = 3,
    pubsub: bool = True,
    sync_period_s: float = 0.25,
    timeout_s: float = 3.0,
    mode: str | None = None,
) -> PropagationResult:
    run = uuid.uuid4().hex[:6]  # fresh targets: nothing left in Redis by an earlier run
    targets = [f"prop{i}-{run}@p" for i in range(trips)]
    stores = await start_fleet(
        url,
        replicas,
        health(open_s=60.0),
        targets,
        sync_period_s=sync_period_s,
        pubsub=pubsub,
        prefix="prop-r",
    )
    times: list[float] = []
    missed = 0
    try:
        await asyncio.sleep(sync_period_s)  # every replica has ticked once
        for i, tid in enumerate(targets):
            origin = stores[i % replicas]
            peers = [s for s in stores if s is not origin]
            t0 = time.perf_counter()
            if not trip(origin, tid):
                raise RuntimeError(f"{tid} did not trip on {origin.replica_id}")
            waiting = set(range(len(peers)))
            deadline = t0 + timeout_s
            while waiting and time.perf_counter() < deadline:
                for j in list(waiting):
                    if state(peers[j], tid) is BreakerState.OPEN:
                        times.append(1000 * (time.perf_counter() - t0))
                        waiting.discard(j)
                await asyncio.sleep(0.001)
            missed += len(waiting)
            # the next trip starts at a random phase of the tick, not right after one
            await asyncio.sleep(0.037 * (i % 7))
    finally:
        await close_fleet(stores)
    return PropagationResult(
        mode or ("pubsub" if pubsub else "reconcile"),
        replicas,
        trips,
        len(times),
        missed,
        percentile(times, 50),
        percentile(times, 99),
        max(times) if times else None,
        sync_period_s,
    )


def render(results: list[PropagationResult]) -> str:
    rows = [
        [r.mode, r.replicas, r.trips, r.samples, r.missed, ms(r.p50_ms), ms(r.p99_ms), ms(r.max_ms)]
        for r in results
    ]
    head = ["mode", "replicas", "trips", "peer obs", "missed", "p50 ms", "p99 ms", "max ms"]
    period = results[0].sync_period_s if results else 0.0
    title = f"propagation: trip on one replica -> OPEN on every peer (sync {period} s, poll 1 ms)"
    return table(title, head, rows)
