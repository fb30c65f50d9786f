"""Phase 4, cost per replica: what the fleet store costs Redis, per replica, at a request rate.

Three in-process replicas, `targets` targets each (4 and 40), synthetic successful outcomes
at `rate` requests/s in total (50 and 500), spread over the replicas and round robin over the
targets. After 1 s of warm-up: `CONFIG RESETSTAT`, one `INFO all`, D seconds, one `INFO all`.
From the two readings: commands/s per replica, by command (INFO commandstats, calls + rejected
+ failed, minus the bench's own first INFO), Redis cores used ((used_cpu_user + used_cpu_sys)
delta / D) and bytes/s in and out (total_net_input/output_bytes delta / D; the bench's one
INFO exchange, ~4 KB, is in those). On a cluster every master is read and the sums reported.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from ops.bench.fleet_common import (
    RedisReading,
    Traffic,
    close_fleet,
    delta_calls,
    health,
    reading,
    reset,
    start_fleet,
    table,
)


@dataclass(frozen=True, slots=True)
class Window:
    """What Redis did over one measured window (summed over `admins`)."""

    seconds: float
    calls: dict[str, int]
    cpu_s: float
    net_in: int
    net_out: int

    @property
    def commands(self) -> int:
        return sum(self.calls.values())


async def measure(admins: Sequence[Redis], seconds: float) -> Window:
    await reset(admins)
    before: list[RedisReading] = [await reading(a) for a in admins]
    await asyncio.sleep(seconds)
    after: list[RedisReading] = [await reading(a) for a in admins]
    calls: dict[str, int] = {}
    for b, a in zip(before, after, strict=True):
        for name, n in delta_calls(b, a).items():
            calls[name] = calls.get(name, 0) + n
    took = max(a.at for a in after) - min(b.at for b in before)
    return Window(
        took,
        calls,
        sum(a.cpu_s - b.cpu_s for b, a in zip(before, after, strict=True)),
        sum(a.net_in - b.net_in for b, a in zip(before, after, strict=True)),
        sum(a.net_out - b.net_out for b, a in zip(before, after, strict=True)),
    )


@dataclass(frozen=True, slots=True)
class CostResult:
    where: str
    replicas: int
    targets: int
    rate: float
    seconds: float
    cmd_s_per_replica: float
    by_command: dict[str, float]  # commands/s per replica
    redis_cores: float
    in_bytes_s: float
    out_bytes_s: float


def cost_of(where: str, replicas: int, targets: int, rate: float, w: Window) -> CostResult:
    per = w.seconds * replicas
    by = {k: round(v / per, 2) for k, v in sorted(w.calls.items(), key=lambda kv: -kv[1])}
    return CostResult(
        where,
        replicas,
        targets,
        rate,
        round(w.seconds, 2),
        w.commands / per,
        by,
        w.cpu_s / w.seconds,
        w.net_in / w.seconds,
        w.net_out / w.seconds,
    )


async def cost_point(
    url: str,
    admins: Sequence[Redis],
    *,
    targets: int,
    rate: float,
    seconds: float,
    replicas: int = 3,
    where: str = "single",
) -> CostResult:
    run = uuid.uuid4().hex[:6]
    tids = [f"cost{i}-{run}@p" for i in range(targets)]
    stores = await start_fleet(url, replicas, health(), tids, prefix="cost-r")
    traffic = Traffic(stores, tids, [], rate).start()
    try:
        await asyncio.sleep(1.0)
        w = await measure(admins, seconds)
    finally:
        await traffic.stop()
        await close_fleet(stores)
    return cost_of(where, replicas, targets, rate, w)


async def costs(
    url: str, admins: Sequence[Redis], *, seconds: float, where: str = "single"
) -> list[CostResult]:
    out = []
    for targets in (4, 40):
        for rate in (50.0, 500.0):
            out.append(
                await cost_point(
                    url, admins, targets=targets, rate=rate, seconds=seconds, where=where
                )
            )
    return out


def _top(by: dict[str, float], n: int = 5) -> str:
    return " ".join(f"{k}={v:g}" for k, v in list(by.items())[:n])


def render(results: list[CostResult], title: str = "cost per replica") -> str:
    head = ["redis", "replicas", "targets", "req/s", "s", "cmd/s/replica", "redis cores"]
    head += ["in KB/s", "out KB/s", "top commands /s/replica"]
    rows = [
        [
            r.where,
            r.replicas,
            r.targets,
            f"{r.rate:g}",
            f"{r.seconds:.1f}",
            f"{r.cmd_s_per_replica:.0f}",
            f"{r.redis_cores:.3f}",
            f"{r.in_bytes_s / 1e3:.1f}",
            f"{r.out_bytes_s / 1e3:.1f}",
            _top(r.by_command),
        ]
        for r in results
    ]
    return table(title + " (INFO commandstats/cpu/stats around the window)", head, rows)
