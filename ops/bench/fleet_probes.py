"""Phase 2, recovery probes: how many half-open probes the fleet sends to close one breaker.

N in-process replicas (3, then 30) on one Redis, breakers with `half_open_successes` 2, open
0.2 s, no jitter. For each of M recoveries a fresh target is tripped on one replica (taking
turns); from then on every replica asks `acquire()` every 5 ms, as traffic would. A probe
permit (`permit.probe`) is released as a success after 20 ms (a request's latency); any other
permit at once. Counted per recovery, from the trip until 0.5 s after every replica's
snapshot says CLOSED: probe permits granted fleet-wide, the distinct replicas that got one,
and the time from the first probe permit to CLOSED on every replica. The goal is exactly
K = 2 probes from a single replica.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from health.breaker import BreakerState
from health.fleet import FleetStore
from ops.bench.fleet_common import OK, close_fleet, health, ms, start_fleet, state, table, trip
from ops.bench.stats import percentile

PROBE_LATENCY_S = 0.02
ASK_EVERY_S = 0.005
TAIL_S = 0.5


@dataclass(frozen=True, slots=True)
class Recovery:
    probes: int
    probers: int
    first_probe_to_closed_ms: float | None  # None: not closed everywhere in time
    unaware_permits: int  # normal permits granted before the first probe (trip not heard)


@dataclass(frozen=True, slots=True)
class ProbesResult:
    replicas: int
    k: int
    recoveries: list[Recovery]
    exactly_k_by_one: int  # recoveries with exactly K probes, all from one replica
    max_probes: int
    max_probers: int
    p50_ms: float | None
    max_ms: float | None
    not_closed: int


async def _recover(stores: list[FleetStore], tid: str, origin: int, timeout_s: float) -> Recovery:
    probes: list[tuple[float, str]] = []
    early = 0
    closed_at: float | None = None
    pending: set[asyncio.Task[None]] = set()

    async def finish(s: FleetStore, permit: object) -> None:
        await asyncio.sleep(PROBE_LATENCY_S)
        s.release(permit, OK)  # type: ignore[arg-type]

    async def ask(s: FleetStore) -> None:
        nonlocal early
        while True:
            permit = s.acquire(tid)
            if permit is not None:
                if permit.probe:
                    probes.append((time.perf_counter(), s.replica_id))
                    task = asyncio.create_task(finish(s, permit))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                else:
                    if not probes:
                        early += 1
                    s.release(permit, OK)
            await asyncio.sleep(ASK_EVERY_S)

    if not trip(stores[origin], tid):
        raise RuntimeError(f"{tid} did not trip")
    askers = [asyncio.create_task(ask(s)) for s in stores]
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if probes and all(state(s, tid) is BreakerState.CLOSED for s in stores):
            closed_at = time.perf_counter()
            break
        await asyncio.sleep(0.002)
    await asyncio.sleep(TAIL_S)  # late probes (a peer that missed the close) still count
    for t in askers:
        t.cancel()
    await asyncio.gather(*askers, *pending, return_exceptions=True)
    first = probes[0][0] if probes else None
    took = None if closed_at is None or first is None else 1000 * (closed_at - first)
    return Recovery(len(probes), len({r for _, r in probes}), took, early)


async def probes(
    url: str,
    *,
    replicas: int = 3,
    recoveries: int = 10,
    k: int = 2,
    sync_period_s: float = 0.25,
    timeout_s: float = 5.0,
) -> ProbesResult:
    run = uuid.uuid4().hex[:6]  # fresh targets: nothing left in Redis by an earlier run
    targets = [f"probe{i}-{run}@p" for i in range(recoveries)]
    settings = health(open_s=0.2, half_open_successes=k)
    stores = await start_fleet(
        url, replicas, settings, targets, sync_period_s=sync_period_s, prefix="probe-r"
    )
    out: list[Recovery] = []
    try:
        await asyncio.sleep(sync_period_s)
        for i, tid in enumerate(targets):
            out.append(await _recover(stores, tid, i % replicas, timeout_s))
    finally:
        await close_fleet(stores)
    times = [r.first_probe_to_closed_ms for r in out if r.first_probe_to_closed_ms is not None]
    return ProbesResult(
        replicas,
        k,
        out,
        sum(1 for r in out if r.probes == k and r.probers == 1),
        max((r.probes for r in out), default=0),
        max((r.probers for r in out), default=0),
        percentile(times, 50),
        max(times) if times else None,
        sum(1 for r in out if r.first_probe_to_closed_ms is None),
    )


def render(results: list[ProbesResult]) -> str:
    rows = []
    for r in results:
        dist = ",".join(f"{x.probes}/{x.probers}" for x in r.recoveries)
        rows.append(
            [
                r.replicas,
                len(r.recoveries),
                f"{r.exactly_k_by_one}/{len(r.recoveries)}",
                r.max_probes,
                r.max_probers,
                ms(r.p50_ms, ".0f"),
                ms(r.max_ms, ".0f"),
                r.not_closed,
                sum(x.unaware_permits for x in r.recoveries),
                dist,
            ]
        )
    k = results[0].k if results else 2
    head = ["replicas", "recov", f"=K({k}) by 1", "max probes", "max probers", "p50 ms"]
    head += ["max ms", "not closed", "unaware permits", "probes/probers per recovery"]
    title = "recovery probes: open 0.2 s, K=2 successes, every replica asks every 5 ms"
    return table(title + " (ms: first probe -> CLOSED on every replica)", head, rows)
