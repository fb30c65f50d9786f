"""Phase 7, Sentinel failover under traffic: do the stores follow the new master, and does an
open breaker survive the switch?

A master, one synced replica (`replica_of`) and a Sentinel; three in-process replicas on the
`redis+sentinel://` URL, traffic as in phase 3 (100 req/s, two healthy targets and a broken one
tripped on r1 before the failover, open 45 s). `SENTINEL FAILOVER` (the switch time is when
the Sentinel names the new master); right after it, each replica rK trips its own fresh target
"post-rK" (r1's is the brief's second trip; r2's and r3's time the other stores).

Black-box measurements:
- a 4th store connected straight to the new master (`redis://`) is started right after the
  switch and polls every 10 ms: the time from the switch until it reads each post-rK OPEN is
  when rK's writes reached the new master (None: not within `follow_timeout_s`);
- the old master's INFO commandstats, every 200 ms: the stores' commands there are the calls
  of non-write commands plus the rejected/failed calls of write ones (the replication link
  from the new master only brings writes and PUBLISH, and the Sentinel's hellos are PUBLISHes:
  PUBLISH counts as a write here); "old master used" is the last time that grew, after the
  switch;
- the pre-failover trip: every replica's snapshot polled every 10 ms throughout, any reading
  that is not OPEN counted (a force-close);
- permits: the broken target's (via traffic), and post-rK's asked every 10 ms on every
  replica once tripped, split into the tripping replica's (must be 0) and its peers' (a peer
  that has not heard of the trip yet; released as neutral so as not to trip it themselves).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from health.breaker import BreakerState
from health.fleet import FleetStore
from ops.bench.fleet_common import (
    NEUTRAL,
    Traffic,
    admin_client,
    close_fleet,
    health,
    ms,
    start_fleet,
    state,
    table,
    trip,
)
from ops.bench.fleet_faults import DegradedWatch
from ops.bench.redisproc import RedisProcess, SentinelProcess, replica_of

# never the stores' tick: the bench's, the Sentinel's and the replication link's own commands
_NOT_STORE = frozenset(
    [
        "info",
        "ping",
        "replconf",
        "select",
        "multi",
        "exec",
        "command",
        "config",
        "client",
        "slaveof",
        "replicaof",
    ]
)


@dataclass(frozen=True, slots=True)
class SentinelResult:
    failover_s: float  # SENTINEL FAILOVER call -> new master named
    follow_s: dict[str, float | None]  # replica -> switch to its post-trip on the new master
    pre_trip_survived: dict[str, bool]  # replica -> never read the pre-failover trip not OPEN
    not_open_readings: int
    broken_permits: int  # the pre-failover broken target
    post_permits_own: int  # post-rK permits granted by rK itself
    post_permits_peers: int  # ... by the peers of rK (not heard of the trip yet)
    old_master_used_s: float | None  # switch -> last growth of the stores' commands there
    old_master_still_used: bool  # still growing when the observation ended
    degraded_replicas: int
    requests: int
    failures: int


async def _store_calls(admin: Redis, writes: set[str]) -> int:
    info = await admin.info("commandstats")
    total = 0
    for k, v in info.items():
        name = k.removeprefix("cmdstat_").split("|")[0]
        if not isinstance(v, dict) or name in _NOT_STORE:
            continue
        bad = int(v.get("rejected_calls", 0)) + int(v.get("failed_calls", 0))
        total += bad if name in writes else int(v.get("calls", 0)) + bad
    return total


async def sentinel_phase(
    workdir: Path, *, follow_timeout_s: float = 20.0, rate: float = 100.0
) -> SentinelResult:
    master = RedisProcess(workdir / "master").start()
    replica: RedisProcess | None = None
    sentinel: SentinelProcess | None = None
    stores: list[FleetStore] = []
    observer: FleetStore | None = None
    try:
        replica = replica_of(master, workdir / "replica")
        sentinel = SentinelProcess(workdir / "sentinel", master.port).start()
        run = uuid.uuid4().hex[:6]
        healthy, broken = [f"ok1-{run}@p", f"ok2-{run}@p"], f"down-{run}@p"
        post = {f"r{i}": f"post-r{i}-{run}@p" for i in (1, 2, 3)}
        targets = [*healthy, broken, *post.values()]
        settings = health(open_s=45.0)
        stores = await start_fleet(sentinel.url(), 3, settings, targets)
        by_id = {s.replica_id: s for s in stores}
        trip(by_id["r1"], broken)
        await asyncio.sleep(0.5)
        old = admin_client(master.port)
        # commands the new master replicates to the old one (PUBLISH too, and the Sentinel's
        # hello messages are PUBLISHes): only their rejected/failed calls are the stores'
        writes = {
            n
            for n, d in (await old.command()).items()
            if {"write", "may-replicate"} & set(d.get("flags", [])) or n == "publish"
        }
        traffic = Traffic(stores, healthy, [broken], rate).start()
        watch = DegradedWatch(stores).start()
        not_open = {s.replica_id: 0 for s in stores}
        tripped: dict[str, str] = {}  # post target -> its replica
        own = peers = 0

        async def poll() -> None:
            nonlocal own, peers
            while True:
                for s in stores:
                    if state(s, broken) is not BreakerState.OPEN:
                        not_open[s.replica_id] += 1
                    for tid, origin in list(tripped.items()):
                        permit = s.acquire(tid)
                        if permit is not None:
                            s.release(permit, NEUTRAL)
                            if s.replica_id == origin:
                                own += 1
                            else:
                                peers += 1
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll())
        await asyncio.sleep(1.0)
        t_call = time.perf_counter()
        new_port = await asyncio.to_thread(sentinel.failover)
        switch = time.perf_counter()
        for rid, tid in post.items():
            trip(by_id[rid], tid)
            tripped[tid] = rid
        observer = (
            await start_fleet(
                f"redis://127.0.0.1:{new_port}/0", 1, settings, targets, prefix="observer-"
            )
        )[0]
        follow: dict[str, float | None] = {rid: None for rid in post}
        last_calls = await _store_calls(old, writes)
        last_growth: float | None = None
        next_info = time.perf_counter()
        deadline = switch + follow_timeout_s
        while time.perf_counter() < deadline:
            now = time.perf_counter()
            for rid, tid in post.items():
                if follow[rid] is None and state(observer, tid) is BreakerState.OPEN:
                    follow[rid] = now - switch
            if now >= next_info:
                calls = await _store_calls(old, writes)
                if calls > last_calls:
                    last_growth = time.perf_counter()
                last_calls = calls
                next_info = now + 0.2
                done = all(v is not None for v in follow.values())
                if done and (last_growth is None or now - last_growth > 3.0):
                    break
            await asyncio.sleep(0.01)
        still = last_growth is not None and time.perf_counter() - last_growth <= 1.0
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        await traffic.stop()
        await watch.stop()
        await old.aclose()
    finally:
        await close_fleet([*stores, *([observer] if observer else [])])
        for p in (sentinel, replica, master):
            if p is not None:
                p.stop()
    return SentinelResult(
        switch - t_call,
        follow,
        {rid: n == 0 for rid, n in not_open.items()},
        sum(not_open.values()),
        sum(traffic.tally.leaks.values()),
        own,
        peers,
        None if last_growth is None else last_growth - switch,
        still,
        len(watch.ever),
        traffic.tally.requests,
        traffic.tally.failures,
    )


def render(r: SentinelResult) -> str:
    head = ["failover s", "follow r1/r2/r3 s", "pre-trip kept", "not-OPEN reads"]
    head += ["broken permits", "post permits own/peers", "old master used s", "degraded"]
    head += ["requests", "failures"]
    follow = "/".join(ms(v, ".2f") for v in r.follow_s.values())
    kept = (
        "all"
        if all(r.pre_trip_survived.values())
        else "NO: " + ",".join(k for k, v in r.pre_trip_survived.items() if not v)
    )
    used = ms(r.old_master_used_s, ".1f") + (" (still)" if r.old_master_still_used else "")
    row = [f"{r.failover_s:.2f}", follow, kept, r.not_open_readings, r.broken_permits]
    row += [f"{r.post_permits_own}/{r.post_permits_peers}", used, f"{r.degraded_replicas}/3"]
    row += [r.requests, r.failures]
    title = "sentinel failover (follow: switch -> a store on the new master reads rK's new trip;"
    return table(title + " — = not within the timeout)", head, [row])
