"""Faults from docs/reliability.md's lists not covered elsewhere: connect timeout, a high but
valid time to first token, a slow client, and a slow Redis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
import redis

from gateway.sim.answers import answer_text
from gateway.sim.faults import Fault
from tests.builders import (
    CHAT,
    GatewayFactory,
    RedisProcess,
    SimFactory,
    admin_targets,
    chat,
    make_config,
)
from tests.waiting import until


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: new SYNs are dropped, connects time out."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = int(srv.getsockname()[1])
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.05)
    try:
        yield port
    finally:
        for c in fillers:
            c.close()
        srv.close()


async def test_connect_timeout_fails_over(
    blackhole_port: int,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    backup = await sim_factory("sim-b")
    timeouts = {"connect_s": 0.3, "headers_s": 2.0, "first_token_s": 2.0, "idle_s": 2.0}
    cfg = make_config(
        {"a": f"http://127.0.0.1:{blackhole_port}/v1", "b": backup.base_url},
        {"chat": ["m@a", "m@b"]},
        timeouts=timeouts,
    )
    gw = await gateway_factory(cfg)
    started = time.monotonic()
    async with http.post(gw.url + CHAT, json=chat(stream=False)) as resp:
        data = await resp.json()
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m@b"
        assert resp.headers["x-turnout-attempts"] == "2"
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 1.5  # the connect timeout, not the header timeout
    assert data["choices"][0]["message"]["content"] == answer_text("sim-b", "m", "hi", 12)
    views = await admin_targets(http, gw)
    assert views["m@a"]["consecutive_failures"] == 1


async def test_a_routes_connect_timeout_applies(
    blackhole_port: int,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    backup = await sim_factory("sim-b")
    timeouts = {"connect_s": 10.0, "headers_s": 2.0, "first_token_s": 2.0, "idle_s": 2.0}
    cfg = make_config(
        {"a": f"http://127.0.0.1:{blackhole_port}/v1", "b": backup.base_url},
        {},
        timeouts=timeouts,
        extra={
            "routes": [
                {"alias": "chat", "candidates": ["m@a", "m@b"], "timeouts": {"connect_s": 0.3}}
            ]
        },
    )
    gw = await gateway_factory(cfg)
    started = time.monotonic()
    async with http.post(gw.url + CHAT, json=chat(stream=False)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m@b"
    assert time.monotonic() - started < 2.0  # the route's 0.3 s, not the provider's 10 s


async def test_high_but_valid_ttft_is_served_not_failed_over(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    slow, backup = await sim_factory("sim-a"), await sim_factory("sim-b")
    slow.state.set_fault(Fault.from_json({"mode": "slow_first_token", "delay_s": 0.6}))
    timeouts = {"connect_s": 1.0, "headers_s": 1.0, "first_token_s": 1.5, "idle_s": 1.0}
    cfg = make_config(
        {"a": slow.base_url, "b": backup.base_url}, {"chat": ["m@a", "m@b"]}, timeouts=timeouts
    )
    gw = await gateway_factory(cfg)
    for stream in (True, False):
        async with http.post(gw.url + CHAT, json=chat(stream=stream)) as resp:
            raw = await resp.read()
            assert resp.status == 200
            assert resp.headers["x-turnout-target"] == "m@a"
            assert resp.headers["x-turnout-attempts"] == "1"
        if stream:
            assert raw.rstrip().endswith(b"data: [DONE]")
    assert backup.state.attempts() == []
    views = await admin_targets(http, gw)
    assert views["m@a"]["error_rate"] == 0.0
    assert views["m@a"]["ttft_ms_ewma"] >= 550  # slow is recorded, and is not a failure


async def test_slow_client_gets_the_whole_stream_and_is_not_an_upstream_idle(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    """A client that reads slowly applies backpressure; the upstream idle timer does not fire
    while the gateway waits for the client, and the answer arrives whole."""
    sim = await sim_factory("sim-a", n_words=1500)  # ~300 KB: more than the socket buffers
    timeouts = {"connect_s": 1.0, "headers_s": 1.0, "first_token_s": 1.0, "idle_s": 0.3}
    gw = await gateway_factory(
        make_config({"a": sim.base_url}, {"chat": ["m@a"]}, timeouts=timeouts)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, limit=8192)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    payload = orjson.dumps(chat(stream=True))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )
    await writer.drain()
    received = b""
    started = time.monotonic()
    while True:
        chunk = await reader.read(8192)
        if not chunk:
            break
        received += chunk
        await asyncio.sleep(0.01)  # far slower than the sim writes: 44 reads, > 0.44 s in all
    writer.close()
    assert time.monotonic() - started > 0.3  # it really was slow
    head, _, rest = received.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"event: error" not in rest
    assert rest.rstrip().endswith(b"data: [DONE]") or b"data: [DONE]" in rest
    log = sim.state.attempts()
    assert len(log) == 1 and log[0]["outcome"] == "completed"


async def test_slow_redis_never_slows_requests(
    redis_server: RedisProcess,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """Redis busy for 1.5 s (DEBUG SLEEP): requests keep their latency; degraded, then back."""
    sim = await sim_factory("sim-a")
    cfg = make_config(
        {"a": sim.base_url},
        {"chat": ["m@a"]},
        extra={"health": {"store": "redis", "redis_url": redis_server.url}},
    )
    gw = await gateway_factory(cfg)

    async def timed(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            async with http.post(gw.url + CHAT, json=chat(stream=False)) as resp:
                await resp.read()
                assert resp.status == 200
            out.append(time.perf_counter() - t)
        return out

    await timed(20)
    before = sorted(await timed(100))
    sleeper = threading.Thread(
        target=lambda: redis.Redis(port=redis_server.port).execute_command("DEBUG", "SLEEP", "1.5")
    )
    sleeper.start()
    await asyncio.sleep(0.05)
    during = sorted(await timed(150))

    async def degraded() -> bool:
        async with http.get(gw.url + "/readyz") as resp:
            return bool((await resp.json())["health_store"]["degraded"])

    saw_degraded = False
    watch_until = time.monotonic() + 1.0  # Redis sleeps for 1.5 s in all
    while not saw_degraded and time.monotonic() < watch_until:
        saw_degraded = await degraded()
        await asyncio.sleep(0.05)
    await asyncio.to_thread(sleeper.join)
    p99_before, p99_during = before[98], during[148]
    print(f"p99 before {p99_before * 1000:.2f} ms, during slow redis {p99_during * 1000:.2f} ms")
    assert p99_during < max(3 * p99_before, p99_before + 0.05)
    assert saw_degraded

    async def recovered() -> bool:
        return not await degraded()

    await until(recovered, 3.0)  # it recovers from the slow Redis
