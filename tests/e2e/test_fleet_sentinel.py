"""The fleet store behind a real Sentinel failover, and the subscription's liveness, against
real Redis processes (issue 18, items 2 and 6).

- After `SENTINEL FAILOVER` the store kept reading and writing the *old* master (a demoted
  master keeps serving the connections it has until Sentinel reconfigures it, seconds later):
  a trip made then never reached the new master. The store asks the Sentinels every tick now
  and moves, its subscription too, within one period.
- Every replica published a heartbeat that every replica received (N² deliveries); a quiet
  subscription is kept alive by PING on its own connection now: nothing is published while
  nothing happens, and the subscription still carries the next event at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis

from health.breaker import BreakerState
from health.fleet import FleetSettings, FleetStore
from health.outcome import FailureReason, provider_failure
from health.settings import BreakerSettings, HealthSettings
from ops.bench.redisproc import replica_of
from tests.builders import RedisProcess, SentinelProcess
from tests.waiting import until

LONG_OPEN = HealthSettings(breaker=BreakerSettings(consecutive_failures=1, open_s=45.0, jitter=0.0))
BEFORE, AFTER = "before@p", "after@p"


def _trip(store: FleetStore, tid: str) -> None:
    permit = store.acquire(tid)
    assert permit is not None
    store.release(permit, provider_failure(FailureReason.CONNECTION_RESET))
    assert store.snapshot([tid])[tid].state is BreakerState.OPEN


def _open(store: FleetStore, tid: str) -> bool:
    return store.snapshot([tid])[tid].state is BreakerState.OPEN


async def test_a_sentinel_failover_is_followed_within_a_period_and_no_trip_is_lost(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    replica = replica_of(redis_server, tmp_path / "replica")
    sentinel = SentinelProcess(tmp_path / "sentinel", redis_server.port).start()
    period = 0.1
    settings = FleetSettings(sentinel.url(), sync_period_s=period)
    stores = [FleetStore(settings, LONG_OPEN, replica_id=r) for r in ("a", "b")]
    leaks = 0
    watcher: asyncio.Task[None] | None = None
    try:
        for s in stores:
            s.track([BEFORE, AFTER])
            await s.start()
        a, b = stores
        _trip(a, BEFORE)
        await until(lambda: _open(b, BEFORE), timeout_s=3.0)

        async def watch() -> None:  # what requests would meet on every replica, every 5 ms
            nonlocal leaks
            while True:
                leaks += sum(not _open(s, BEFORE) for s in stores)  # a broken target let through
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        new_port = await asyncio.to_thread(sentinel.failover)
        assert new_port == replica.port
        await asyncio.sleep(2 * period)  # the stores' next ticks ask the Sentinel
        _trip(a, AFTER)  # made after the switch: it must land on the new master
        new_master = Redis(port=new_port)
        fresh = FleetStore(FleetSettings(f"redis://127.0.0.1:{new_port}/0"), LONG_OPEN)
        try:
            fresh.track([BEFORE, AFTER])
            await fresh.start()
            # A replica that comes up on the new master knows both trips: nothing was lost.
            await until(lambda: _open(fresh, AFTER) and _open(fresh, BEFORE), timeout_s=2.0)
            await until(lambda: _open(b, AFTER), timeout_s=2.0)  # and so do the peers

            async def all_subscribed() -> bool:  # a's, b's and the fresh store's subscription
                [(_, count)] = await new_master.pubsub_numsub(settings.prefix + ":events")
                return bool(count == 3)

            await until(all_subscribed, timeout_s=2.0)
        finally:
            await fresh.close()
            await new_master.aclose()
        for _ in range(5):  # several ticks later nobody closed anything
            await asyncio.sleep(period)
            assert all(_open(s, BEFORE) for s in stores)
        assert leaks == 0, leaks
    finally:
        if watcher is not None:
            watcher.cancel()
        for s in stores:
            await s.close()
        sentinel.stop()
        replica.stop()


async def test_a_quiet_fleet_publishes_nothing_and_its_subscription_stays_alive(
    redis_server: RedisProcess,
) -> None:
    settings = FleetSettings(redis_server.url, sync_period_s=0.25, heartbeat_s=0.2)
    stores = [FleetStore(settings, LONG_OPEN, replica_id=r) for r in ("a", "b")]
    admin = Redis(port=redis_server.port)
    try:
        for s in stores:
            s.track([BEFORE])
            await s.start()
        await admin.config_resetstat()
        # Longer than the 3 pings a silent subscription is given: it is still up after.
        await asyncio.sleep(1.0)
        stats = await admin.info("commandstats")
        assert "cmdstat_publish" not in stats, stats["cmdstat_publish"]  # before: heartbeats
        assert stats["cmdstat_ping"]["calls"] >= 4, stats.get("cmdstat_ping")
        [(_, subscribers)] = await admin.pubsub_numsub(settings.prefix + ":events")
        assert subscribers == 2
        a, b = stores
        _trip(a, BEFORE)
        # by pub/sub: a few ms (reconciliation would take up to a period, 250 ms)
        await until(lambda: _open(b, BEFORE), timeout_s=0.2)
    finally:
        for s in stores:
            await s.close()
        await admin.aclose()
