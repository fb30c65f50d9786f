"""FleetStore faults found by measurement (issue 18), against a real Redis server process:

- a probe-lock claim whose reply timed out, but that Redis executed later, left a lock holding
  this replica's id that nobody owned: the target stayed half-open fleet-wide until the lock
  expired (30 s). The claim is idempotent now: a lock that holds our id is ours.
- while Redis was away the frozen fleet window was still reported (and ranked by) as if
  current; it is reported as absent once the store is degraded.
- with `pubsub: false` every event was still published to a channel nobody listened to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from health.breaker import Admission, BreakerState
from health.fleet import FleetSettings, FleetStore
from health.fleet_sync import Record
from health.outcome import FailureReason, classify_status, provider_failure
from health.settings import BreakerSettings, HealthSettings
from ops.bench.fleet_common import close_fleet
from tests.builders import RedisProcess
from tests.waiting import until

TID = "m@p"
FAST = HealthSettings(
    breaker=BreakerSettings(consecutive_failures=1, open_s=0.2, jitter=0.0, half_open_successes=1)
)


TWO_PROBES = HealthSettings(  # a recovery takes two probe successes
    breaker=BreakerSettings(consecutive_failures=1, open_s=0.2, jitter=0.0, half_open_successes=2)
)


@contextlib.asynccontextmanager
async def running(
    settings: FleetSettings, health: HealthSettings | None, *ids: str
) -> AsyncIterator[list[FleetStore]]:
    """Replicas `ids` of one fleet, tracking TID, started; closed however the test ends."""
    stores = [FleetStore(settings, health, replica_id=i) for i in ids]
    try:
        for s in stores:
            s.track([TID])
            await s.start()
        yield stores
    finally:
        await close_fleet(stores)


def _trip(store: FleetStore) -> None:
    permit = store.acquire(TID)
    assert permit is not None
    store.release(permit, provider_failure(FailureReason.CONNECTION_RESET))
    assert store.snapshot([TID])[TID].state is BreakerState.OPEN


async def test_a_probe_lock_left_by_our_own_late_claim_is_ours(
    redis_server: RedisProcess,
) -> None:
    settings = FleetSettings(redis_server.url, sync_period_s=0.05, probe_lock_s=30.0)
    store = FleetStore(settings, FAST, replica_id="replica-a")
    store.track([TID])
    await store.start()
    try:
        _trip(store)
        # A claim of ours timed out client-side, and Redis ran it afterwards: the lock holds
        # our id for 30 s, and we never learned that we won it.
        client = store._client
        await client.set(store.keys.probe(TID), "replica-a", px=30_000)

        async def probing() -> bool:
            # A request asks for the probe; the sync loop claims the lock for it.
            permit = store.acquire(TID)
            if permit is None:
                return False
            assert permit.probe
            store.release(permit, classify_status(200))
            return True

        await until(probing, timeout_s=3.0)  # before: never (not for 30 s)
        assert store.snapshot([TID])[TID].state is BreakerState.CLOSED
    finally:
        await store.close()


async def test_a_lock_held_by_another_replica_is_still_not_ours(
    redis_server: RedisProcess,
) -> None:
    settings = FleetSettings(redis_server.url, sync_period_s=0.05, probe_lock_s=30.0)
    store = FleetStore(settings, FAST, replica_id="replica-a")
    store.track([TID])
    await store.start()
    try:
        _trip(store)
        await store._client.set(store.keys.probe(TID), "replica-b", px=30_000)

        async def half_open() -> bool:
            return store.snapshot([TID])[TID].state is BreakerState.HALF_OPEN

        await until(half_open, timeout_s=2.0)
        for _ in range(10):  # asked repeatedly, over several sync periods (a negative check:
            assert store.acquire(TID) is None  # nothing to wait for, so time must pass)
            await asyncio.sleep(settings.sync_period_s)
        assert store.admission(TID) is Admission.DENY  # replica-b is probing
    finally:
        await store.close()


async def test_while_degraded_the_fleet_window_is_reported_absent(
    redis_server: RedisProcess,
) -> None:
    settings = FleetSettings(redis_server.url, sync_period_s=0.05, timeout_s=0.1)
    async with running(settings, None, "a", "b") as (a, b):
        for _ in range(4):  # a sees failures; b learns of them through the fleet window
            permit = a.acquire(TID)
            assert permit is not None
            a.release(permit, classify_status(503))

        async def b_sees_fleet() -> bool:
            return b.snapshot([TID])[TID].fleet_error_rate == 1.0

        await until(b_sees_fleet, timeout_s=3.0)
        redis_server.kill()

        async def degraded_and_absent() -> bool:
            view = b.snapshot([TID])[TID]
            return b.status().degraded and view.fleet_error_rate is None

        await until(degraded_and_absent, timeout_s=3.0)  # before: 1.0 for the whole outage
        assert b.snapshot([TID])[TID].fleet_window_calls == 0
        redis_server.start()

        async def back() -> bool:
            return not b.status().degraded and b.snapshot([TID])[TID].fleet_error_rate is not None

        await until(back, timeout_s=5.0)


async def test_without_pubsub_nothing_is_published_and_peers_still_converge(
    redis_server: RedisProcess,
) -> None:
    """`health.pubsub: false` means reconciliation only: events were still PUBLISHed to a
    channel nobody listened to (issue 18, item 7)."""
    settings = FleetSettings(redis_server.url, sync_period_s=0.05, pubsub=False)
    async with running(settings, FAST, "a", "b") as (a, b):
        _trip(a)

        async def b_sees_open() -> bool:
            return b.snapshot([TID])[TID].state is BreakerState.OPEN

        await until(b_sees_open, timeout_s=3.0)
        stats = await a._client.info("commandstats")
        assert "cmdstat_publish" not in stats, stats.get("cmdstat_publish")


async def test_a_recovery_is_probed_k_times_by_one_replica(redis_server: RedisProcess) -> None:
    """Every replica wants the probe; the lock's winner makes all `half_open_successes` probes
    (it kept the lock between them), so a recovery costs K probes whatever the fleet size.
    Before, the lock was handed over after each probe and each replica counted its own
    successes: 3-4 probes from up to 3 replicas (issue 18, item 3)."""
    settings = FleetSettings(redis_server.url, sync_period_s=0.05)
    stores = [FleetStore(settings, TWO_PROBES, replica_id=f"r{i}") for i in range(4)]
    for s in stores:
        s.track([TID])
        await s.start()
    try:
        _trip(stores[0])

        async def all_open() -> bool:
            return all(s.snapshot([TID])[TID].state is BreakerState.OPEN for s in stores)

        await until(all_open, timeout_s=3.0)
        probes: list[str] = []

        def ask(s: FleetStore) -> None:
            permit = s.acquire(TID)
            if permit is not None:
                if permit.probe:
                    probes.append(s.replica_id)
                s.release(permit, classify_status(200))

        async def first_probe() -> bool:
            for s in stores:  # every replica has traffic that wants the target
                ask(s)
            return bool(probes)

        await until(first_probe, timeout_s=3.0)
        winner = probes[0]
        # Only the others ask for a while: the winner keeps the lock for its next probe, so
        # none of them may probe (before, the lock went back after each probe and was theirs).
        for _ in range(8):
            for s in stores:
                if s.replica_id != winner:
                    ask(s)
            await asyncio.sleep(settings.sync_period_s)
        assert probes == [winner], probes

        async def recovered() -> bool:
            for s in stores:
                ask(s)
            return all(s.snapshot([TID])[TID].state is BreakerState.CLOSED for s in stores)

        await until(recovered, timeout_s=5.0)
        assert len(probes) == 2, probes
        assert len(set(probes)) == 1, probes  # one prober
        # The lock is held a moment past the close (no late claim by a peer), then expires.
        key = stores[0].keys.probe(TID)
        assert 0 < await stores[0]._client.pttl(key) <= 4 * settings.sync_period_s * 1000
    finally:
        for s in stores:
            await s.close()


async def test_a_closing_replica_gives_its_probe_lock_back(redis_server: RedisProcess) -> None:
    settings = FleetSettings(redis_server.url, sync_period_s=0.05, probe_lock_s=30.0)
    a = FleetStore(settings, TWO_PROBES, replica_id="a")
    a.track([TID])
    await a.start()
    _trip(a)

    async def probed_once() -> bool:
        permit = a.acquire(TID)
        if permit is None:
            return False
        a.release(permit, classify_status(200))  # 1 of 2: a keeps the lock for the next
        return True

    await until(probed_once, timeout_s=3.0)
    key = a.keys.probe(TID)
    client = a._client

    async def held() -> bool:
        return await client.get(key) == b"a"

    await until(held, timeout_s=2.0)
    await a.close()  # a rolling restart mid-recovery: the others must not wait 30 s
    b = FleetStore(settings, TWO_PROBES, replica_id="b")
    await b.start()
    try:
        assert await b._client.get(key) is None
    finally:
        await b.close()


async def test_a_trip_redis_lost_is_republished_by_its_owner_not_closed(
    redis_server: RedisProcess,
) -> None:
    """Redis loses a trip without restarting empty (a Sentinel failover to a replica that had
    not got the write, a restore): before, every replica read the missing key as "closed by
    the fleet" and force-closed the breaker — its owner too, with most of its open time left —
    and requests went to the broken target (issue 18, item 2)."""
    long_open = HealthSettings(
        breaker=BreakerSettings(consecutive_failures=1, open_s=30.0, jitter=0.0)
    )
    settings = FleetSettings(redis_server.url, sync_period_s=0.05)
    async with running(settings, long_open, "a", "b") as (a, b):
        _trip(a)

        async def b_open() -> bool:
            return b.snapshot([TID])[TID].state is BreakerState.OPEN

        await until(b_open, timeout_s=3.0)
        keys = a.keys
        seen: set[BreakerState] = set()

        async def watch_b() -> None:  # what b's requests would meet, every 10 ms
            while True:
                seen.add(b.snapshot([TID])[TID].state)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch_b())
        # The write is lost, as on a replica that never got it: the record, its change and
        # the version it took.
        await a._client.hdel(keys.state, TID)
        await a._client.zrem(keys.changes, TID)
        await a._client.hincrby(keys.meta, "v", -1)

        async def restored() -> bool:
            record = Record.decode(await a._client.hget(keys.state, TID))
            server_s, _ = await a._client.time()
            return record.open_until > (server_s + 20) * 1000

        try:
            await until(restored, timeout_s=3.0)  # its owner published it again
            await asyncio.sleep(4 * settings.sync_period_s)  # b's next readings, too
        finally:
            watcher.cancel()
        assert seen == {BreakerState.OPEN}, seen  # b never let a request through meanwhile
        for _ in range(10):  # and nobody closed it meanwhile, over several ticks
            assert a.snapshot([TID])[TID].state is BreakerState.OPEN
            assert b.snapshot([TID])[TID].state is BreakerState.OPEN
            await asyncio.sleep(settings.sync_period_s)


async def test_a_store_closes_promptly_even_when_a_cancel_races_redis_pys_read_timeout(
    redis_server: RedisProcess,
) -> None:
    """redis-py's `get_message(timeout=...)` turns a cancel that lands as its read timeout
    expires into "no message": the subscription went on, close() waited its 2 s bound for it,
    and without a later error the task never ended (a CI teardown hung on it). About one close
    in twelve hit it; 25 closes, each at a different point of the 0.25 s read."""
    settings = FleetSettings(redis_server.url, sync_period_s=0.05)
    slow = 0
    for i in range(25):
        store = FleetStore(settings, replica_id=f"c{i}")
        store.track([TID])
        await store.start()
        await asyncio.sleep(0.01 * i)
        tasks = list(store._tasks)
        started = asyncio.get_running_loop().time()
        await store.close()
        if asyncio.get_running_loop().time() - started > 1.0:
            slow += 1
        assert all(t.done() for t in tasks)
    assert slow == 0
