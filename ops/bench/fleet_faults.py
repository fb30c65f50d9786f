"""Phase 3, Redis faults under traffic: what the replicas do while Redis misbehaves.

Three in-process replicas on one Redis, 100 requests/s in total (`fleet_common.Traffic`): each
request takes the first admitted of two healthy targets and also asks a broken target that was
tripped (open 60 s) on one replica and seen OPEN by all three before the fault. Each fault is
one episode with fresh targets: 1 s of traffic, the fault, then traffic until every store
reports not degraded again (at most `recover_timeout_s`), then a new replica starts.

Faults: SIGKILL (down `down_s`, then started again on the same port, empty), SIGSTOP for
`stop_s` then SIGCONT, restart empty (kill + start at once), `DEBUG SLEEP 2` (redis-cli).

Reported per fault: requests that found no admitted healthy target (failures), permits granted
to the broken target (leaks: it stays open for 60 s, so every one is a leak), event-loop lag p99
of this process from the fault's start until the stores recovered (a 10 ms sleep's overshoot),
how many stores
reported `status().degraded`, the time from the fault's end until none does, and whether the
replica started after the recovery reads the broken target as OPEN right after `start()` and
refuses its first request to it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from health.breaker import BreakerState
from health.fleet import FleetStore
from ops.bench.fleet_common import (
    NEUTRAL,
    LagProbe,
    Traffic,
    close_fleet,
    health,
    ms,
    start_fleet,
    state,
    table,
    trip,
)
from ops.bench.redisproc import RedisProcess, redis_binary, redis_cli

Fault = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FaultResult:
    fault: str
    fault_s: float  # how long the fault lasted, as measured
    requests: int
    failures: int
    leaks: int
    lag_p99_ms: float | None
    degraded_replicas: int  # stores that reported degraded at some point
    replicas: int
    recovered_s: float | None  # fault end -> no store degraded (None: not in time)
    newcomer_knows_open: bool | None  # None: not checked (Redis not back)
    newcomer_refused: bool | None
    seen_open_before: bool  # every replica read the broken target OPEN before the fault


class DegradedWatch:
    """Polls every store's `status().degraded` every 10 ms."""

    def __init__(self, stores: Sequence[FleetStore]) -> None:
        self.stores = list(stores)
        self.ever: set[str] = set()
        self.readings: list[tuple[float, bool]] = []  # (time, any degraded)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> DegradedWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            bad = [s.replica_id for s in self.stores if s.status().degraded]
            self.ever.update(bad)
            self.readings.append((time.perf_counter(), bool(bad)))
            await asyncio.sleep(0.01)

    def recovered_after(self, t: float) -> float | None:
        """Time from `t` to the first reading after it with no store degraded, stable from
        then on."""
        first: float | None = None
        for at, bad in self.readings:
            if at < t:
                continue
            if bad:
                first = None
            elif first is None:
                first = at
        return None if first is None else first - t

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def episode(
    name: str,
    url: str,
    fault: Fault,
    *,
    rate: float = 100.0,
    replicas: int = 3,
    recover_timeout_s: float = 10.0,
    sync_period_s: float = 0.25,
) -> FaultResult:
    run = uuid.uuid4().hex[:6]
    healthy, broken = [f"ok1-{run}@p", f"ok2-{run}@p"], f"down-{run}@p"
    targets = [*healthy, broken]
    settings = health(open_s=60.0)
    stores = await start_fleet(url, replicas, settings, targets, sync_period_s=sync_period_s)
    traffic = Traffic(stores, healthy, [broken], rate)
    lag = LagProbe().start()
    watch = DegradedWatch(stores)
    newcomer: FleetStore | None = None
    try:
        trip(stores[0], broken)
        deadline = time.perf_counter() + 2.0
        while time.perf_counter() < deadline:
            if all(state(s, broken) is BreakerState.OPEN for s in stores):
                break
            await asyncio.sleep(0.005)
        seen = all(state(s, broken) is BreakerState.OPEN for s in stores)
        traffic.start()
        watch.start()
        await asyncio.sleep(1.0)
        t0 = time.perf_counter()
        await fault()
        t1 = time.perf_counter()
        deadline = t1 + recover_timeout_s
        while time.perf_counter() < deadline:
            if time.perf_counter() - t1 > 0.3 and watch.readings and not watch.readings[-1][1]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        recovered = watch.recovered_after(t1)
        knows: bool | None = None
        refused: bool | None = None
        if recovered is not None:
            newcomer = (
                await start_fleet(
                    url, 1, settings, targets, sync_period_s=sync_period_s, prefix="new-"
                )
            )[0]
            knows = state(newcomer, broken) is BreakerState.OPEN
            permit = newcomer.acquire(broken)
            refused = permit is None
            if permit is not None:
                newcomer.release(permit, NEUTRAL)
    finally:
        await traffic.stop()
        await watch.stop()
        await lag.stop()
        await close_fleet([*stores, *([newcomer] if newcomer else [])])
    tally = traffic.tally
    return FaultResult(
        name,
        t1 - t0,
        tally.requests,
        tally.failures,
        sum(tally.leaks.values()),
        lag.p99_ms(t0, t1 + (recovered or 0.0)),
        len(watch.ever),
        replicas,
        recovered,
        knows,
        refused,
        seen,
    )


def kill_fault(server: RedisProcess, down_s: float) -> Fault:
    async def run() -> None:
        server.kill()
        await asyncio.sleep(down_s)
        await asyncio.to_thread(server.start)

    return run


def stop_fault(server: RedisProcess, stop_s: float) -> Fault:
    async def run() -> None:
        server.pause()
        try:
            await asyncio.sleep(stop_s)
        finally:
            server.resume()

    return run


def restart_fault(server: RedisProcess) -> Fault:
    async def run() -> None:
        await asyncio.to_thread(server.restart)

    return run


def debug_sleep_fault(port: int, seconds: float) -> Fault:
    async def run() -> None:
        cli = redis_cli(redis_binary())
        proc = await asyncio.create_subprocess_exec(
            cli,
            "-p",
            str(port),
            "debug",
            "sleep",
            str(seconds),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()

    return run


async def faults(server: RedisProcess, *, quick: bool) -> list[FaultResult]:
    stop_s = 3.0 if quick else 10.0
    down_s = 2.0 if quick else 5.0
    plan: list[tuple[str, Fault]] = [
        (f"SIGKILL, down {down_s:g} s, restart empty", kill_fault(server, down_s)),
        (f"SIGSTOP {stop_s:g} s", stop_fault(server, stop_s)),
        ("restart empty", restart_fault(server)),
        ("DEBUG SLEEP 2", debug_sleep_fault(server.port, 2.0)),
    ]
    return [await episode(name, server.url, f) for name, f in plan]


def _yn(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "NO")


def render(results: list[FaultResult], title: str = "redis faults under traffic") -> str:
    head = ["fault", "fault s", "requests", "failures", "leaks", "lag p99 ms", "degraded"]
    head += ["recovered s", "new replica: OPEN", "refused 1st", "OPEN before"]
    rows = [
        [
            r.fault,
            f"{r.fault_s:.1f}",
            r.requests,
            r.failures,
            r.leaks,
            ms(r.lag_p99_ms),
            f"{r.degraded_replicas}/{r.replicas}",
            ms(r.recovered_s, ".2f"),
            _yn(r.newcomer_knows_open),
            _yn(r.newcomer_refused),
            _yn(r.seen_open_before),
        ]
        for r in results
    ]
    note = (
        " (3 replicas, 100 req/s, broken target open 60 s; recovered: fault end -> none degraded)"
    )
    return table(title + note, head, rows)
