"""Rate limits and budgets shared by the fleet through a real Redis server process: three
replicas (full gateways, or the limits' own ledger and sync in virtual time) on one Redis,
real sims; Redis killed and restarted empty mid-window.

The bound these tests hold the fleet to is the one docs/security.md states: within a window
the fleet admits at most the limit plus what the other replicas admitted in the last two
sync periods (a replica's admissions reach Redis at its next sync, and the others at theirs);
while Redis is away each replica admits at most its share, limit / replicas seen.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from gateway.config import load_data
from gateway.config.clients import ClientConfig, ClientLimits, digest
from gateway.edge.context import RUNTIME
from gateway.edge.server import Server
from gateway.limits.ledger import Ledger, nano_usd
from gateway.limits.sync import Keys, LimitSync
from gateway.limits.windows import Span, window
from gateway.sim import SimServer
from health.settings import FleetSettings
from tests.builders import (
    GatewayFactory,
    RedisProcess,
    SimFactory,
    admission,
    chat,
    post,
    sse_events,
)
from tests.waiting import until

KEY = "tk-fleet-0123456789abcdefghijklmnop"
AUTH = {"Authorization": f"Bearer {KEY}"}
PRICE = {"input_per_mtok": 0.15, "output_per_mtok": 0.6}
PERIOD_S = 0.1
RPM = 30


def fleet_config(redis_url: str, sim: SimServer, limits: dict[str, Any]) -> Any:
    return load_data(
        {
            "providers": {"s": {"base_url": sim.base_url, "api_key": "key-s"}},
            "targets": {"m@s": {"provider": "s", "model": "m", "price": PRICE}},
            "routes": [{"alias": "chat", "candidates": ["m@s"]}],
            "clients": {"web": {"key_sha256": digest(KEY), "limits": limits}},
            "health": {"store": "redis", "redis_url": redis_url, "sync_period_s": PERIOD_S},
            "resilience": {"same_target_retries": 0},
        },
        env={},
    )


async def inside_one_minute(needed_s: float) -> None:
    """Wait, if need be, so that the next `needed_s` seconds are all in one UTC minute."""
    left = 60.0 - time.time() % 60.0
    if left < needed_s:
        await asyncio.sleep(left + 0.05)


def requests_used(gw: Server) -> int:
    return int(gw.app[RUNTIME].limits.meters["web"].requests.used)


async def test_three_replicas_admit_the_fleets_limit_not_three_times_it(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory("s")
    cfg = fleet_config(redis_server.url, sim, {"rpm": RPM, "usd_per_day": 100})
    replicas = [await gateway_factory(cfg) for _ in range(3)]
    gap_s, per_replica = 0.05, 40
    await inside_one_minute(per_replica * gap_s * 2 + 5)
    spend = [0]

    async def traffic(gw: Server, n: int) -> list[float]:
        admitted = []
        for i in range(per_replica):
            stream = i % 2 == 1
            body = chat(f"request {n} {i}", stream=stream)
            if stream:
                body["stream_options"] = {"include_usage": True}
            reply = await post(http, gw, body, headers=AUTH)
            assert reply.status in (200, 429), reply.body
            if reply.status == 200:
                admitted.append(time.monotonic())
                if stream:
                    chunks = [orjson.loads(d) for _, d in sse_events(reply.body)[:-1]]
                    usage = next(c["usage"] for c in chunks if c.get("usage"))
                else:
                    usage = reply.json()["usage"]
                spend[0] += nano_usd(
                    (
                        usage["prompt_tokens"] * PRICE["input_per_mtok"]
                        + usage["completion_tokens"] * PRICE["output_per_mtok"]
                    )
                    / 1e6
                )
            else:
                assert reply.json()["error"]["code"] == "rpm_limit_exceeded"
            await asyncio.sleep(gap_s)
        return admitted

    started = time.monotonic()
    admitted = await asyncio.gather(*(traffic(gw, n) for n, gw in enumerate(replicas)))
    assert time.monotonic() - started < per_replica * gap_s * 2 + 5  # nobody waited on Redis
    total = sum(len(a) for a in admitted)
    # Each replica sends at most one request per gap: in two periods (and a round trip) it
    # admits at most this many that the others cannot have seen yet.
    unseen = math.ceil((2 * PERIOD_S + 0.05) / gap_s)
    assert RPM <= total <= RPM + 2 * unseen, [len(a) for a in admitted]
    assert len(sim.state.attempts()) == total  # refused requests reached no provider

    async def all_agree() -> bool:
        return all(requests_used(g) == total for g in replicas)

    await until(all_agree, 3.0)
    # The fleet's spend in Redis is every answer's usage at the target's price, exactly.
    day = window(Span.DAY, time.time())
    async with aioredis.from_url(redis_server.url) as r:
        day_total = await r.hget(Keys("turnout").window(day), "web")
    assert int(day_total) == spend[0]


@pytest.mark.parametrize("limit", ["tpm", "usd_per_day"])
async def test_three_replicas_keep_a_token_or_spend_limit_for_the_fleet(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    limit: str,
) -> None:
    """Tokens and spend are counted from each answer's usage, after it: the fleet admits
    while its total is under the limit, with the same sync lag as `rpm` plus the answers in
    flight when the limit is crossed (docs/security.md, "The bounded overshoot")."""
    sim = await sim_factory("s")
    body = chat("the same question every time")
    async with http.post(sim.base_url + "/chat/completions", json={**body, "model": "m"}) as r:
        usage = (await r.json())["usage"]  # what each answer costs: the sim is deterministic
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    dollars = (
        usage["prompt_tokens"] * PRICE["input_per_mtok"]
        + usage["completion_tokens"] * PRICE["output_per_mtok"]
    ) / 1e6
    fits = 20  # answers the limit holds
    value: float = tokens * fits if limit == "tpm" else dollars * fits
    cfg = fleet_config(redis_server.url, sim, {limit: value})
    replicas = [await gateway_factory(cfg) for _ in range(3)]
    gap_s, per_replica = 0.05, 25
    await inside_one_minute(per_replica * gap_s * 2 + 5)
    code = "tpm_limit_exceeded" if limit == "tpm" else "budget_exceeded"

    async def traffic(gw: Server) -> int:
        admitted = 0
        for _ in range(per_replica):
            reply = await post(http, gw, body, headers=AUTH)
            assert reply.status in (200, 429), reply.body
            if reply.status == 200:
                admitted += 1
            else:
                assert reply.json()["error"]["code"] == code
            await asyncio.sleep(gap_s)
        return admitted

    total = sum(await asyncio.gather(*(traffic(gw) for gw in replicas)))
    print(f"\n{limit}: {total} admitted, {fits} fit")
    # The others' admissions in two periods and a round trip, and one answer in flight per
    # replica when the total crossed the limit: what the fleet may admit beyond it.
    unseen = math.ceil((2 * PERIOD_S + 0.05) / gap_s)
    assert fits <= total <= fits + 2 * unseen + len(replicas), total
    assert total < per_replica * len(replicas)  # the limit did stop the fleet
    assert len(sim.state.attempts()) == total + 1  # + the price probe; refusals reached none


async def test_with_redis_killed_each_replica_keeps_to_its_share_and_reconciles_after(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory("s")
    replicas = [
        await gateway_factory(fleet_config(redis_server.url, sim, {"rpm": RPM})) for _ in range(3)
    ]
    await inside_one_minute(20)
    for gw in replicas:
        for _ in range(4):
            assert (await post(http, gw, chat(), headers=AUTH)).status == 200

    def synced(total: int) -> Callable[[], bool]:
        return lambda: all(requests_used(g) == total for g in replicas)

    await until(synced(12), 3.0)
    assert all(g.app[RUNTIME].limits.replicas == 3 for g in replicas)
    redis_server.kill()

    def degraded() -> bool:
        return all(g.app[RUNTIME].limit_sync.degraded for g in replicas)  # type: ignore[union-attr]

    await until(degraded, 3.0)
    # Each may admit its share (30 / 3 = 10), of which it used 4: 6 more each, not 18.
    for gw in replicas:
        statuses = []
        for _ in range(10):
            started = time.monotonic()
            reply = await post(http, gw, chat(), headers=AUTH)
            assert time.monotonic() - started < 1.0  # never waits on the dead Redis
            statuses.append(reply.status)
        assert statuses == [200] * 6 + [429] * 4, statuses
    assert len(sim.state.attempts()) == RPM

    redis_server.start()  # back, and empty: each replica re-sends what it counted
    await until(synced(RPM), 5.0)
    assert not any(g.app[RUNTIME].limit_sync.degraded for g in replicas)  # type: ignore[union-attr]
    minute = window(Span.MINUTE, time.time())
    async with aioredis.from_url(redis_server.url) as r:
        assert int(await r.hget(Keys("turnout").window(minute), "web|r")) == RPM
    refused = await post(http, replicas[0], chat(), headers=AUTH)
    assert refused.status == 429

    for gw in replicas:  # and a stop leaves no sync task behind
        await gw.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "limits-sync"]


class Wall:
    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at


async def test_the_sync_in_virtual_time_shares_totals_degrades_and_resends(
    redis_server: RedisProcess,
) -> None:
    """The ledger and its sync alone, ticked by hand on one virtual wall clock."""
    wall = Wall()
    wall.at = wall.at - wall.at % 60 + 1  # the first second of a minute
    web = ClientConfig("web", limits=ClientLimits(rpm=30, usd_per_month=1.0))
    fleet = FleetSettings(url=redis_server.url, timeout_s=0.2)
    ledgers = [Ledger([web], wall) for _ in range(3)]
    syncs = [LimitSync(lg, fleet, replica_id=f"r{i}") for i, lg in enumerate(ledgers)]
    for s in syncs:
        s.connect()
    try:
        for lg in ledgers:
            for _ in range(5):
                assert admission(lg, web) == ""
            lg.account("web", 10, 7)
        for s in syncs:
            await s.sync_once()
        # The last to sync has seen everyone; the first saw only itself.
        assert [lg.meters["web"].requests.used for lg in ledgers] == [5, 10, 15]
        assert [lg.replicas for lg in ledgers] == [1, 2, 3]
        for s in syncs:
            await s.sync_once()
        assert [lg.meters["web"].requests.used for lg in ledgers] == [15, 15, 15]
        assert [lg.meters["web"].month.used for lg in ledgers] == [21, 21, 21]
        assert [lg.replicas for lg in ledgers] == [3, 3, 3]
        redis_server.kill()
        started = time.monotonic()
        for s in syncs:
            await s.sync_once()
        assert time.monotonic() - started < 3 * 0.2 * 1.5 + 0.5  # bounded by the timeouts
        assert all(s.degraded and not lg.shared for s, lg in zip(syncs, ledgers, strict=True))
        admitted = [sum(admission(lg, web) == "" for _ in range(20)) for lg in ledgers]
        assert admitted == [5, 5, 5]  # a share of 10 each, 5 used
        redis_server.start()  # empty
        for _ in range(3):  # in, resent, read by all
            for s in syncs:
                await s.sync_once()
        assert [lg.meters["web"].requests.used for lg in ledgers] == [30, 30, 30]
        assert [lg.meters["web"].month.used for lg in ledgers] == [21, 21, 21]
        assert all(lg.shared for lg in ledgers)
    finally:
        for s in syncs:
            await s.close()
