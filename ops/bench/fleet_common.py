"""Shared pieces of the fleet bench (`python -m ops.bench.fleet`): in-process FleetStore
replicas, synthetic traffic, an event-loop lag probe, black-box Redis readings and tables.

Everything here talks to the store through its public API only (track/start/close/acquire/
release/snapshot/status) and to Redis through INFO, CONFIG RESETSTAT and CLIENT LIST: no key
name and no private attribute of `health.fleet`, whose internals change under this bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from health.breaker import BreakerState
from health.fleet import FleetStore
from health.outcome import CLIENT_GONE, FailureReason, Outcome, provider_failure, succeeded
from health.settings import BreakerSettings, FleetSettings, HealthSettings
from ops.bench.stats import percentile

FAIL = provider_failure(FailureReason.CONNECTION_RESET)
OK = succeeded(200, latency_s=0.05)
NEUTRAL = CLIENT_GONE
ADMIN_NAME = "fleet-bench-admin"


def health(
    *, open_s: float = 60.0, half_open_successes: int = 1, consecutive_failures: int = 1
) -> HealthSettings:
    """Breakers that trip on one failure, without jitter (the bench controls every trip)."""
    return HealthSettings(
        breaker=BreakerSettings(
            consecutive_failures=consecutive_failures,
            open_s=open_s,
            jitter=0.0,
            half_open_successes=half_open_successes,
        )
    )


async def start_fleet(
    url: str,
    n: int,
    settings: HealthSettings,
    targets: Sequence[str],
    *,
    sync_period_s: float = 0.25,
    pubsub: bool = True,
    prefix: str = "r",
) -> list[FleetStore]:
    """`n` replicas on `url`, started concurrently (each start is bounded by the store)."""
    fleet = FleetSettings(url, sync_period_s=sync_period_s, pubsub=pubsub)
    stores = [FleetStore(fleet, settings, replica_id=f"{prefix}{i + 1}") for i in range(n)]
    for s in stores:
        s.track(targets)
    await asyncio.gather(*(s.start() for s in stores))
    return stores


async def close_fleet(stores: Sequence[FleetStore]) -> None:
    await asyncio.gather(*(s.close() for s in stores), return_exceptions=True)


def trip(store: FleetStore, tid: str) -> bool:
    """One provider failure on `tid` (breakers trip on one): whether it is OPEN now."""
    permit = store.acquire(tid)
    if permit is None:
        return store.snapshot([tid])[tid].state is BreakerState.OPEN
    store.release(permit, FAIL)
    return store.snapshot([tid])[tid].state is BreakerState.OPEN


def state(store: FleetStore, tid: str) -> BreakerState:
    return store.snapshot([tid])[tid].state


class LagProbe:
    """Event-loop lag: how late a 10 ms sleep wakes up, sampled continuously, timestamped."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LagProbe:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.period_s)
            t1 = time.perf_counter()
            self.samples.append((t1, max(0.0, t1 - t0 - self.period_s)))

    def p99_ms(self, since: float = 0.0, until: float = float("inf")) -> float | None:
        lags = [lag for t, lag in self.samples if since <= t <= until]
        p = percentile(lags, 99)
        return None if p is None else 1000 * p

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Tally:
    """What synthetic traffic saw: requests, those with no admitted healthy target, and
    permits granted per broken (should-be-open) target."""

    requests: int = 0
    failures: int = 0
    leaks: dict[str, int] = field(default_factory=dict)
    failure_times: list[float] = field(default_factory=list)


class Traffic:
    """Each replica sends requests at `rate_total / len(stores)` per second: a request takes
    the first admitted healthy target (round robin) and also asks every broken target; a
    permit on a broken target is a leak, released as `broken_outcome`."""

    def __init__(
        self,
        stores: Sequence[FleetStore],
        healthy: Sequence[str],
        broken: Sequence[str],
        rate_total: float,
        broken_outcome: Outcome = FAIL,
    ) -> None:
        self.stores = list(stores)
        self.healthy = list(healthy)
        self.broken = list(broken)
        self.rate_total = rate_total
        self.broken_outcome = broken_outcome
        self.tally = Tally(leaks={b: 0 for b in broken})
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Traffic:
        interval = len(self.stores) / self.rate_total
        for i, s in enumerate(self.stores):
            self._tasks.append(asyncio.create_task(self._run(s, interval, i * 0.003)))
        return self

    def one(self, store: FleetStore, turn: int) -> None:
        t = self.tally
        t.requests += 1
        order = self.healthy[turn % len(self.healthy) :] + self.healthy[: turn % len(self.healthy)]
        for tid in order:
            permit = store.acquire(tid)
            if permit is not None:
                store.release(permit, OK)
                break
        else:
            t.failures += 1
            t.failure_times.append(time.perf_counter())
        for tid in self.broken:
            permit = store.acquire(tid)
            if permit is not None:
                t.leaks[tid] = t.leaks.get(tid, 0) + 1
                store.release(permit, self.broken_outcome)

    async def _run(self, store: FleetStore, interval: float, offset: float) -> None:
        await asyncio.sleep(offset)
        nxt = time.perf_counter()
        for turn in itertools.count():
            self.one(store, turn)
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


# -- Redis, black-box ---------------------------------------------------------------------------


def admin_client(port: int, timeout_s: float = 5.0) -> Redis:
    return Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        client_name=ADMIN_NAME,
    )


@dataclass(frozen=True, slots=True)
class RedisReading:
    """One `INFO all`: calls per command (calls + rejected + failed), CPU seconds, net bytes."""

    at: float
    calls: dict[str, int]
    cpu_s: float
    net_in: int
    net_out: int


def parse_calls(info: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in info.items():
        if k.startswith("cmdstat_") and isinstance(v, dict):
            n = int(v.get("calls", 0)) + int(v.get("rejected_calls", 0))
            out[k.removeprefix("cmdstat_")] = n + int(v.get("failed_calls", 0))
    return out


async def reading(admin: Redis) -> RedisReading:
    info: dict[str, Any] = await admin.info("all")
    return RedisReading(
        time.perf_counter(),
        parse_calls(info),
        float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        int(info["total_net_input_bytes"]),
        int(info["total_net_output_bytes"]),
    )


async def reset(admins: Sequence[Redis]) -> None:
    for a in admins:
        await a.config_resetstat()


def delta_calls(
    before: RedisReading, after: RedisReading, own: dict[str, int] | None = None
) -> dict[str, int]:
    """Commands between two readings, without the bench's own: the first reading's INFO
    counts itself once it has run (the last one does not), plus `own` (e.g. a DEBUG)."""
    mine = {"info": 1, **(own or {})}
    out: dict[str, int] = {}
    for name, n in after.calls.items():
        d = n - before.calls.get(name, 0) - mine.get(name, 0)
        if d > 0:
            out[name] = d
    return out


# -- tables -------------------------------------------------------------------------------------


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def ms(v: float | None, spec: str = ".1f") -> str:
    return "—" if v is None else format(v, spec)
