"""Fleet health through a real Redis server process: replicas act as one brain.

Each replica is a full gateway (its own app, port and FleetStore) on loopback; the sims and
Redis are real servers. Faults are driven on the sims and on the Redis process itself.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.edge.server import Server
from gateway.sim.faults import Fault
from gateway.sim.server import SimServer
from tests.builders import (
    CHAT,
    GatewayFactory,
    RedisProcess,
    SentinelProcess,
    SimFactory,
    admin_targets,
    chat,
    closed_port,
    make_config,
)
from tests.waiting import until


def fleet_config(redis_url: str, primary: SimServer, backup: SimServer, **health: Any) -> Any:
    h: dict[str, Any] = {
        "store": "redis",
        "redis_url": redis_url,
        "sync_period_s": 0.25,
        "breaker": {"open_s": 1.0, "jitter": 0.0, "half_open_successes": 1},
    }
    h.update(health)
    return make_config(
        {"p": primary.base_url, "b": backup.base_url},
        {"chat": ["m@p", "m@b"]},
        extra={"health": h},
    )


async def ask(http: aiohttp.ClientSession, gw: Server, rid: str = "") -> aiohttp.ClientResponse:
    headers = {"X-Request-Id": rid} if rid else {}
    async with http.post(gw.url + CHAT, json=chat(), headers=headers) as resp:
        await resp.read()
        return resp


def attempts_by(sim: SimServer, prefix: str) -> int:
    return sum(
        1 for a in sim.state.attempts() if a["headers"].get("x-request-id", "").startswith(prefix)
    )


async def _trip_on_a_and_watch_b(
    http: aiohttp.ClientSession, a: Server, b: Server, p: SimServer
) -> tuple[float, int]:
    """Break p, trip its breaker through A, and keep B busy meanwhile (a request every 20 ms).

    Returns how long B took to see the target open, and how many of B's requests reached p
    after A's trip.
    """
    for i in range(3):  # B has used p and found it healthy
        r = await ask(http, b, f"B-warm-{i}")
        assert r.headers["x-turnout-target"] == "m@p"
    p.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for i in range(5):
        r = await ask(http, a, f"A-{i}")
        assert r.status == 200 and r.headers["x-turnout-target"] == "m@b"
    assert (await admin_targets(http, a))["m@p"]["state"] == "open"
    tripped = time.monotonic()
    stop = asyncio.Event()

    async def b_traffic() -> None:
        i = 0
        while not stop.is_set():
            r = await ask(http, b, f"B-after-{i}")
            assert r.status == 200
            i += 1
            await asyncio.sleep(0.02)

    task = asyncio.create_task(b_traffic())
    try:

        async def b_sees_open() -> bool:
            return (await admin_targets(http, b))["m@p"]["state"] == "open"

        await until(b_sees_open, 2.0)
        seen_after = time.monotonic() - tripped
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
    return seen_after, attempts_by(p, "B-after-")


async def test_a_trip_on_one_replica_stops_the_others_within_a_second(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, bk = await sim_factory("p"), await sim_factory("b")
    cfg = fleet_config(redis_server.url, p, bk)
    a, b = await gateway_factory(cfg), await gateway_factory(cfg)
    seen_after, b_attempts = await _trip_on_a_and_watch_b(http, a, b, p)
    assert seen_after < 1.0
    assert b_attempts == 0  # B never had to fail a request of its own
    state = (await admin_targets(http, b))["m@p"]
    assert state["view"] == "fleet"
    assert state["last_transition"]["reason"].startswith("peer:")


async def test_reconciliation_alone_converges_without_pubsub(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, bk = await sim_factory("p"), await sim_factory("b")
    a = await gateway_factory(fleet_config(redis_server.url, p, bk))
    b = await gateway_factory(fleet_config(redis_server.url, p, bk, pubsub=False))
    seen_after, b_attempts = await _trip_on_a_and_watch_b(http, a, b, p)
    assert seen_after < 1.0
    # Without pub/sub B may send a few requests in the last sync period (~250 ms at one
    # request per ~25 ms); each failed over invisibly.
    assert b_attempts <= 15


async def test_recovery_is_probed_by_exactly_one_replica(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, bk = await sim_factory("p"), await sim_factory("b")
    cfg = fleet_config(redis_server.url, p, bk)
    replicas = [await gateway_factory(cfg) for _ in range(3)]
    p.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for i in range(5):
        await ask(http, replicas[0], f"trip-{i}")

    async def all_open() -> bool:
        states = [(await admin_targets(http, g))["m@p"] for g in replicas]
        return all(s["state"] == "open" for s in states)

    await until(all_open, 1.0)
    # p recovers, but slowly on its first answer: that first request is the probe, and no
    # other replica may reach p while it is in flight.
    p.state.clear_log()
    p.state.set_fault(Fault.from_json({"mode": "slow_first_token", "delay_s": 0.6, "count": 1}))
    stop = asyncio.Event()

    async def traffic(g: Server, name: str) -> None:
        i = 0
        while not stop.is_set():
            r = await ask(http, g, f"{name}-{i}")
            assert r.status == 200
            i += 1
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(traffic(g, f"r{n}")) for n, g in enumerate(replicas)]
    try:

        def origins_on_p() -> set[str]:
            completed = [a for a in p.state.attempts()[1:] if a["outcome"] == "completed"]
            return {a["headers"]["x-request-id"].split("-")[0] for a in completed}

        async def p_serves_every_replica_again() -> bool:
            # each replica learns of the close by pub/sub or its next sync: wait for all three
            # (waiting for a count instead raced: two fast replicas could reach it alone)
            return origins_on_p() == {"r0", "r1", "r2"}

        await until(p_serves_every_replica_again, 5.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    log = p.state.attempts()
    probe = log[0]
    assert probe["t_end"] is not None and probe["t_end"] - probe["t_start"] >= 0.5
    concurrent = [a for a in log[1:] if a["t_start"] < probe["t_end"]]
    assert concurrent == []  # exactly one probe in flight across the fleet
    # Traffic came back on p from every replica once the probe closed the breaker.
    assert origins_on_p() == {"r0", "r1", "r2"}


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_throttles_the_target_fleet_wide_without_counting_a_failure(
    form: str,
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, bk = await sim_factory("p"), await sim_factory("b")
    cfg = fleet_config(redis_server.url, p, bk)
    a, b = await gateway_factory(cfg), await gateway_factory(cfg)
    retry_after: int | str = 3 if form == "seconds" else formatdate(time.time() + 3, usegmt=True)
    p.state.set_fault(
        Fault.from_json({"mode": "status", "status": 429, "retry_after": retry_after, "count": 1})
    )
    r = await ask(http, a, "A-0")
    assert r.headers["x-turnout-target"] == "m@b"

    async def b_throttled() -> bool:
        return (await admin_targets(http, b))["m@p"]["throttled_until"] is not None

    await until(b_throttled, 1.0)
    state = (await admin_targets(http, b))["m@p"]
    left = state["throttled_until"] - time.time()
    assert 1.0 < left <= 3.1
    assert state["state"] == "closed" and state["consecutive_failures"] == 0
    a_state = (await admin_targets(http, a))["m@p"]
    assert a_state["window_calls"] == 0 and a_state["error_rate"] == 0.0
    for i in range(5):
        r = await ask(http, b, f"B-{i}")
        assert r.headers["x-turnout-target"] == "m@b"
    assert attempts_by(p, "B-") == 0


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


async def _latencies(http: aiohttp.ClientSession, gw: Server, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = await ask(http, gw)
        assert r.status == 200
        out.append(time.perf_counter() - t)
    return out


async def _readyz(http: aiohttp.ClientSession, gw: Server) -> dict[str, Any]:
    async with http.get(gw.url + "/readyz") as resp:
        assert resp.status == 200  # degraded is still ready: it serves on local health
        data: dict[str, Any] = await resp.json()
        return data


@pytest.mark.parametrize("fault", ["kill", "sigstop"])
async def test_redis_trouble_never_slows_or_fails_requests(
    fault: str,
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, bk = await sim_factory("p"), await sim_factory("b")
    gw = await gateway_factory(fleet_config(redis_server.url, p, bk))
    await _latencies(http, gw, 20)  # warm up
    before = await _latencies(http, gw, 150)
    if fault == "kill":
        redis_server.kill()
    else:
        redis_server.pause()

    async def degraded() -> bool:
        return bool((await _readyz(http, gw))["health_store"]["degraded"])

    try:
        during = await _latencies(http, gw, 150)
        await until(degraded, 2.0)
        during += await _latencies(http, gw, 150)
    finally:
        if fault == "kill":
            redis_server.start()
        else:
            redis_server.resume()

    async def recovered() -> bool:
        return not (await _readyz(http, gw))["health_store"]["degraded"]

    await until(recovered, 3.0)
    ratio = p99(during) / p99(before)
    print(
        f"p99 before {p99(before) * 1000:.2f} ms, during {p99(during) * 1000:.2f} ms, x{ratio:.2f}"
    )
    # Generous: noise on a shared 2-core machine, but a blocked request would cost >= 200 ms.
    assert p99(during) < max(3 * p99(before), p99(before) + 0.05)


async def test_redis_restarted_empty_converges_by_resync(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    p, bk = await sim_factory("p"), await sim_factory("b")
    cfg = fleet_config(redis_server.url, p, bk, breaker={"open_s": 30.0, "jitter": 0.0})
    a, b = await gateway_factory(cfg), await gateway_factory(cfg)
    p.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for i in range(5):
        await ask(http, a, f"A-{i}")

    async def b_open() -> bool:
        return (await admin_targets(http, b))["m@p"]["state"] == "open"

    await until(b_open, 1.0)
    redis_server.restart()  # same port, no data
    # A re-publishes its open breaker; a replica that starts now learns it from Redis.
    c = await gateway_factory(cfg)

    async def c_open() -> bool:
        return (await admin_targets(http, c))["m@p"]["state"] == "open"

    await until(c_open, 3.0)
    assert (await admin_targets(http, b))["m@p"]["state"] == "open"
    for i in range(5):
        r = await ask(http, c, f"C-{i}")
        assert r.headers["x-turnout-target"] == "m@b"
    assert attempts_by(p, "C-") == 0


async def test_starts_fast_and_serves_when_redis_is_down(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, bk = await sim_factory("p"), await sim_factory("b")
    cfg = fleet_config(f"redis://127.0.0.1:{closed_port()}/0", p, bk)
    t = time.monotonic()
    gw = await gateway_factory(cfg)
    assert time.monotonic() - t < 2.0
    ready = await _readyz(http, gw)
    assert ready["health_store"] == {
        "backend": "redis",
        "degraded": True,
        "detail": ready["health_store"]["detail"],
    }
    assert "redis unavailable" in ready["health_store"]["detail"]
    r = await ask(http, gw)
    assert r.status == 200 and r.headers["x-turnout-target"] == "m@p"
    # Local breakers still work on their own, and probe locally.
    p.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for _ in range(5):
        await ask(http, gw)
    state = (await admin_targets(http, gw))["m@p"]
    assert state["state"] == "open" and state["view"] == "local"


async def test_replicas_share_health_through_a_sentinel_url(
    tmp_path: Path,
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    sentinel = SentinelProcess(tmp_path / "sentinel", redis_server.port).start()
    try:
        p, bk = await sim_factory("p"), await sim_factory("b")
        a = await gateway_factory(fleet_config(sentinel.url(), p, bk))
        b = await gateway_factory(fleet_config(redis_server.url, p, bk))
        assert (await _readyz(http, a))["health_store"]["degraded"] is False
        seen_after, b_attempts = await _trip_on_a_and_watch_b(http, a, b, p)
        assert seen_after < 1.0 and b_attempts == 0
    finally:
        sentinel.stop()
