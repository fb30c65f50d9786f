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

from health.breaker import Admission, BreakerState
from health.fleet import FleetSettings, FleetStore
from health.outcome import FailureReason, classify_status, provider_failure
from health.settings import BreakerSettings, HealthSettings
from tests.builders import RedisProcess
from tests.waiting import until

TID = "m@p"
FAST = HealthSettings(
    breaker=BreakerSettings(consecutive_failures=1, open_s=0.2, jitter=0.0, half_open_successes=1)
)


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
    a = FleetStore(settings, replica_id="a")
    b = FleetStore(settings, replica_id="b")
    for s in (a, b):
        s.track([TID])
        await s.start()
    try:
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
    finally:
        for s in (a, b):
            await s.close()


async def test_without_pubsub_nothing_is_published_and_peers_still_converge(
    redis_server: RedisProcess,
) -> None:
    """`health.pubsub: false` means reconciliation only: events were still PUBLISHed to a
    channel nobody listened to (issue 18, item 7)."""
    settings = FleetSettings(redis_server.url, sync_period_s=0.05, pubsub=False)
    a = FleetStore(settings, FAST, replica_id="a")
    b = FleetStore(settings, FAST, replica_id="b")
    for s in (a, b):
        s.track([TID])
        await s.start()
    try:
        _trip(a)

        async def b_sees_open() -> bool:
            return b.snapshot([TID])[TID].state is BreakerState.OPEN

        await until(b_sees_open, timeout_s=3.0)
        stats = await a._client.info("commandstats")
        assert "cmdstat_publish" not in stats, stats.get("cmdstat_publish")
    finally:
        for s in (a, b):
            await s.close()
