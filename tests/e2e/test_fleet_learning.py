"""`adaptive`'s learned state shared by the fleet through a real Redis server process, and
kept across config reloads. Real gateways, sims and Redis; feedback through `/v1/feedback`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.config import load_data, load_file
from gateway.edge.server import Server
from gateway.sim.server import SimServer
from health.fleet import FleetSettings, FleetStore
from health.learned import Evidence
from tests.builders import CHAT, GatewayFactory, RedisProcess, SimFactory, chat
from tests.waiting import until

ASK = chat(model="r")


async def test_two_stores_converge_on_everything_either_learned(
    redis_server: RedisProcess,
) -> None:
    settings = FleetSettings(redis_server.url, sync_period_s=0.05)
    a, b = FleetStore(settings), FleetStore(settings)
    await a.start()
    await b.start()
    try:
        sa, sb = a.learned("r#0"), b.learned("r#0")
        for _ in range(30):
            sa.add("x", 1.0, 1.0)  # decay 1: plain sums, so the fleet total is exact
        for _ in range(20):
            sb.add("x", 0.0, 1.0)
            sb.add("y", 1.0, 1.0)

        async def converged() -> bool:
            want = {"x": Evidence(30.0, 20.0), "y": Evidence(20.0, 0.0)}
            return all(s.evidence(t) == e for s in (sa, sb) for t, e in want.items())

        await until(converged)

        # Redis restarts empty while A goes on learning: nothing is lost, nothing doubled.
        redis_server.kill()
        for _ in range(5):
            sa.add("x", 1.0, 1.0)
        await asyncio.sleep(0.2)  # a few failed syncs: A keeps it as unsent
        assert sa.evidence("x") == Evidence(35.0, 20.0)
        redis_server.start()

        async def recovered() -> bool:
            return sb.evidence("x") == Evidence(35.0, 20.0) and sb.evidence("y") == Evidence(
                20.0, 0.0
            )

        await until(recovered, timeout_s=5.0)
        assert sa.evidence("x") == Evidence(35.0, 20.0)
    finally:
        await a.close()
        await b.close()


async def test_a_closing_replica_hands_over_what_it_learned_since_the_last_sync(
    redis_server: RedisProcess,
) -> None:
    slow = FleetStore(FleetSettings(redis_server.url, sync_period_s=30.0))  # no tick before close
    peer = FleetStore(FleetSettings(redis_server.url, sync_period_s=0.05))
    await slow.start()
    await peer.start()
    try:
        peer_space = peer.learned("r#0")
        for _ in range(4):
            slow.learned("r#0").add("x", 1.0, 1.0)
        await slow.close()  # a rolling restart: the last period's learning is not lost

        async def handed_over() -> bool:
            return peer_space.evidence("x") == Evidence(4.0, 0.0)

        await until(handed_over)
    finally:
        await peer.close()


async def test_junk_in_the_shared_hash_is_reseeded_not_fatal(redis_server: RedisProcess) -> None:
    """A foreign write (a typo in redis-cli) must not make the fold script fail: the whole
    round trip would then be re-sent every period and the store stay degraded."""
    import redis.asyncio as aioredis

    settings = FleetSettings(redis_server.url, sync_period_s=0.05)
    store = FleetStore(settings)
    await store.start()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        space = store.learned("r#0")
        space.add("x", 1.0, 1.0)
        space.add("y", 0.0, 1.0)
        key = store.keys.learned("r#0")

        async def synced() -> bool:
            return bool(await client.hget(key, "x|s") == b"1")

        await until(synced)
        await client.hset(key, mapping={"x|s": "junk", "y|f": "inf", "z|s": "-3"})
        space.add("x", 1.0, 1.0)

        async def repaired() -> bool:
            fields = await client.hgetall(key)
            return fields.get(b"x|s") == b"2" and fields.get(b"y|f") == b"1"

        await until(repaired)
        assert not store.status().degraded
        assert space.evidence("x") == Evidence(2.0, 0.0)
        assert space.evidence("y") == Evidence(0.0, 1.0)
        assert space.evidence("z") == Evidence(0.0, 0.0)  # a negative sum is not ours
    finally:
        await client.aclose()
        await store.close()


def adaptive_config(sims: dict[str, SimServer], health: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 0, "config_poll_s": 0},
        "health": health,
        "providers": {n: {"base_url": s.base_url} for n, s in sims.items()},
        "targets": {"ta": {"provider": "a", "model": "m"}, "tb": {"provider": "b", "model": "m"}},
        "routes": [
            {
                "alias": "r",
                "candidates": ["ta", "tb"],
                "policy": {"name": "adaptive", "params": {"feedback_weight": 1.0}},
            }
        ],
    }


async def ask_and_judge(http: aiohttp.ClientSession, gw: Server, n: int) -> list[str]:
    """`n` requests; the caller's verdict on each: `ta`'s answers are bad, `tb`'s good."""
    served = []
    for _ in range(n):
        async with http.post(gw.url + CHAT, json=ASK) as r:
            assert r.status == 200
            target, rid = r.headers["x-turnout-target"], r.headers["x-request-id"]
            await r.read()
        verdict = {"request_id": rid, "score": 0.0 if target == "ta" else 1.0}
        async with http.post(gw.url + "/v1/feedback", json=verdict) as r:
            assert r.status == 200
        served.append(target)
    return served


async def means(http: aiohttp.ClientSession, gw: Server) -> dict[str, float]:
    """Each target's posterior mean, as `POST /admin/route` explains the decision."""
    async with http.post(gw.url + "/admin/route", json=ASK) as r:
        d = await r.json()
    out = {}
    for c in d["ranked"]:
        m = re.search(r"mean (\d\.\d+)", c["note"])
        assert m is not None, c
        out[c["target"]] = float(m.group(1))
    return out


async def first_choices(http: aiohttp.ClientSession, gw: Server, n: int) -> list[str]:
    out = []
    for _ in range(n):
        async with http.post(gw.url + "/admin/route", json=ASK) as r:
            out.append((await r.json())["ranked"][0]["target"])
    return out


async def test_a_replica_routes_by_what_another_replica_learned(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    a_sim, b_sim = await sim_factory("a"), await sim_factory("b")
    health = {"store": "redis", "redis_url": redis_server.url, "sync_period_s": 0.05}
    cfg = load_data(adaptive_config({"a": a_sim, "b": b_sim}, health), env={})
    one, two = await gateway_factory(cfg), await gateway_factory(cfg)

    before = await means(http, two)
    assert before == {"ta": 0.5, "tb": 0.5}  # the prior: two has learned nothing yet

    served = await ask_and_judge(http, one, 60)  # all traffic and feedback through one
    assert served.count("tb") > 30  # one learned to prefer tb

    async def two_knows_what_one_learned() -> bool:
        m2 = await means(http, two)
        return m2 == await means(http, one) and m2["tb"] > 0.8

    await until(two_knows_what_one_learned)
    picks = await first_choices(http, two, 40)
    assert picks.count("tb") >= 34, picks
    # two sent nothing itself: every attempt the sims saw came from one's 60 requests.
    assert len(a_sim.state.log) + len(b_sim.state.log) == 60


async def test_what_adaptive_learned_survives_a_reload(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    a_sim, b_sim = await sim_factory("a"), await sim_factory("b")
    data = adaptive_config({"a": a_sim, "b": b_sim}, {"store": "memory"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    gw = await gateway_factory(load_file(path))
    await ask_and_judge(http, gw, 40)
    learned = await means(http, gw)
    assert learned["tb"] > 0.8

    data["routes"][0]["max_attempts"] = 2  # a real change: the route and its policy are rebuilt
    path.write_text(yaml.safe_dump(data))
    async with http.post(gw.url + "/admin/reload") as r:
        assert r.status == 200 and (await r.json())["changed"] is True
    assert await means(http, gw) == learned
