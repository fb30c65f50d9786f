"""Fleet health through a real local Redis Cluster (three masters, every slot covered; issue 18,
item 1). Before, a `redis+cluster://` URL crashed the gateway at start-up (`RedisCluster` took
no `retry_on_timeout`), and with that patched every tick failed: a cluster pipeline refuses
MGET and PUBLISH. Pub/sub is not used on a cluster: replicas converge by reconciliation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster

from gateway.config.clients import ClientConfig, ClientLimits
from gateway.edge.server import Server
from gateway.limits.ledger import Ledger
from gateway.limits.sync import Keys, LimitSync
from gateway.sim.faults import Fault
from gateway.sim.server import SimServer
from health.breaker import BreakerState
from health.fleet import FleetSettings, FleetStore
from health.outcome import classify_status
from health.settings import BreakerSettings, HealthSettings
from ops.bench.redisproc import ClusterProcess
from tests.builders import (
    CHAT,
    GatewayFactory,
    SimFactory,
    admin_targets,
    admission,
    chat,
    make_config,
)
from tests.waiting import until

TID = "m@p"


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    cluster = ClusterProcess(tmp_path / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


def cluster_config(url: str, p: SimServer, b: SimServer) -> Any:
    health = {
        "store": "redis",
        "redis_url": url,
        "sync_period_s": 0.1,
        "breaker": {"open_s": 2.0, "jitter": 0.0, "half_open_successes": 1},
    }
    return make_config(
        {"p": p.base_url, "b": b.base_url}, {"chat": [TID, "m@b"]}, extra={"health": health}
    )


async def ask(http: aiohttp.ClientSession, gw: Server) -> aiohttp.ClientResponse:
    async with http.post(gw.url + CHAT, json=chat()) as resp:
        await resp.read()
        return resp


async def _connected(http: aiohttp.ClientSession, gw: Server) -> bool:
    async with http.get(gw.url + "/readyz") as r:
        store = (await r.json())["health_store"]
    assert store["backend"] == "redis", store
    return store["degraded"] is False


async def test_replicas_share_a_trip_through_a_cluster(
    redis_cluster: ClusterProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, b = await sim_factory("p"), await sim_factory("b")
    cfg = cluster_config(redis_cluster.url, p, b)
    first, second = await gateway_factory(cfg), await gateway_factory(cfg)
    for gw in (first, second):
        # A store starts degraded until its first tick reaches Redis; on a loaded machine a
        # cluster's first round trip (slot discovery on three nodes) can time out once.
        await until(lambda gw=gw: _connected(http, gw), timeout_s=10.0)
    p.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for _ in range(5):  # five failures through the first replica trip the breaker
        r = await ask(http, first)
        assert r.status == 200 and r.headers["x-turnout-target"] == "m@b"
    assert (await admin_targets(http, first))[TID]["state"] == "open"

    async def second_sees_open() -> bool:
        return (await admin_targets(http, second))[TID]["state"] == "open"

    await until(second_sees_open, timeout_s=3.0)  # reconciliation alone, a few ticks
    before = len(p.state.attempts())
    for _ in range(5):
        r = await ask(http, second)
        assert r.status == 200 and r.headers["x-turnout-target"] == "m@b"
    assert len(p.state.attempts()) == before  # the second replica sends p nothing


async def test_windows_and_the_probe_lock_work_on_a_cluster(
    redis_cluster: ClusterProcess,
) -> None:
    settings = FleetSettings(redis_cluster.url, sync_period_s=0.05, timeout_s=0.5)
    fast = HealthSettings(breaker=BreakerSettings(consecutive_failures=1, open_s=0.3, jitter=0.0))
    a, b = FleetStore(settings, fast, replica_id="a"), FleetStore(settings, fast, replica_id="b")
    for s in (a, b):
        s.track([TID])
        await s.start()
    try:
        for _ in range(3):
            permit = b.acquire(TID)
            assert permit is not None
            b.release(permit, classify_status(200))

        async def a_sees_b_s_calls() -> bool:
            return a.snapshot([TID])[TID].fleet_window_calls == 3

        await until(a_sees_b_s_calls, timeout_s=3.0)  # the window buckets, read by script
        permit = a.acquire(TID)
        assert permit is not None
        a.release(permit, classify_status(503))  # a trips; b adopts it

        async def both_open() -> bool:
            return all(s.snapshot([TID])[TID].state is BreakerState.OPEN for s in (a, b))

        await until(both_open, timeout_s=3.0)
        probes: list[str] = []

        async def recovered() -> bool:
            for s in (a, b):
                got = s.acquire(TID)
                if got is not None:
                    if got.probe:
                        probes.append(s.replica_id)
                    s.release(got, classify_status(200))
            return all(s.snapshot([TID])[TID].state is BreakerState.CLOSED for s in (a, b))

        await until(recovered, timeout_s=5.0)
        assert len(probes) == 2 and len(set(probes)) == 1, probes  # the lock, on a cluster
        assert not a.status().degraded and not b.status().degraded
    finally:
        for s in (a, b):
            await s.close()


async def test_a_node_killed_under_traffic_costs_no_request(
    redis_cluster: ClusterProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, b = await sim_factory("p"), await sim_factory("b")
    gw = await gateway_factory(cluster_config(redis_cluster.url, p, b))
    statuses: list[int] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            statuses.append((await ask(http, gw)).status)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(traffic())

    async def degraded() -> bool:
        async with http.get(gw.url + "/readyz") as r:
            return bool((await r.json())["health_store"]["degraded"])

    try:
        await until(lambda: len(statuses) >= 20, timeout_s=5.0)
        node = redis_cluster.nodes[1]
        node.kill()  # its slots are down: every tick touches them (the epoch, some targets)
        await until(degraded, timeout_s=5.0)
        served_while_down = len(statuses)
        await until(lambda: len(statuses) >= served_while_down + 20, timeout_s=5.0)
        node.start()  # the same port and nodes.conf: it rejoins
        redis_cluster.wait_ok()

        async def recovered() -> bool:
            return not await degraded()

        await until(recovered, timeout_s=10.0)
    finally:
        stop.set()
        await task
    assert statuses and set(statuses) == {200}, sorted(set(statuses))


async def test_client_key_limits_are_shared_through_a_cluster(
    redis_cluster: ClusterProcess,
) -> None:
    """The limits' pipeline on a cluster: every key in the `{fleet}` slot, one node."""
    web = ClientConfig("web", limits=ClientLimits(rpm=10, usd_per_day=1.0))
    fleet = FleetSettings(url=redis_cluster.url, timeout_s=0.5)
    ledgers = [Ledger([web]) for _ in range(2)]
    syncs = [LimitSync(lg, fleet, replica_id=f"r{i}") for i, lg in enumerate(ledgers)]
    for s in syncs:
        s.connect()
    try:
        for s in syncs:  # the first trip finds the cluster's slots (slow on a loaded machine)
            await until(partial(_synced, s), timeout_s=10.0)
        for lg in ledgers:
            for _ in range(3):
                assert admission(lg, web) == ""
            lg.account("web", 5, 11)
        for _ in range(2):
            for s in syncs:
                await s.sync_once()
        assert not any(s.degraded for s in syncs)
        assert [lg.meters["web"].requests.used for lg in ledgers] == [6, 6]
        assert [lg.meters["web"].day.used for lg in ledgers] == [22, 22]
        assert [lg.replicas for lg in ledgers] == [2, 2]
    finally:
        for s in syncs:
            await s.close()


async def _synced(sync: LimitSync) -> bool:
    await sync.sync_once()
    return not sync.degraded


async def test_after_a_timed_out_limits_trip_the_totals_read_are_the_clusters(
    redis_cluster: ClusterProcess,
) -> None:
    """A round trip cut short by its timeout (every node paused) may leave its replies on a
    connection: the sync must not read them as the next trip's."""
    web = ClientConfig("web", limits=ClientLimits(rpm=100))
    ledger = Ledger([web])
    sync = LimitSync(ledger, FleetSettings(url=redis_cluster.url, timeout_s=0.2), replica_id="r")
    sync.connect()
    try:
        for _ in range(2):
            assert admission(ledger, web) == ""
        # The first trip to a fresh cluster discovers its slots on three nodes: on a loaded
        # CI machine that once took longer than the 0.2 s timeout. Not what is tested here.
        await until(lambda: _synced(sync), timeout_s=10.0)
        for _ in range(3):
            assert admission(ledger, web) == ""
        for node in redis_cluster.nodes:
            node.pause()
        try:
            await sync.sync_once()
        finally:
            for node in redis_cluster.nodes:
                node.resume()
        assert sync.degraded
        for _ in range(2):
            await sync.sync_once()
        assert not sync.degraded
        minute = ledger.windows.minute
        reader = RedisCluster.from_url(redis_cluster.url.replace("redis+cluster", "redis"))
        try:
            stored = int(await reader.hget(Keys("turnout").window(minute), "web|r"))
        finally:
            await reader.aclose()
        assert stored >= 5  # a trip that timed out but ran anyway counts twice, never less
        assert ledger.meters["web"].requests.used == stored
    finally:
        await sync.close()
