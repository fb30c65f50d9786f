"""A client that goes away: the upstream request is cancelled at once (the sim sees its
connection closed), and the target's health is untouched (a client leaving is neutral).

The sim logs `t_end` with `time.monotonic()` in this same process, so the test can compare it
with the moment it hung up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from gateway.edge.server import Server
from gateway.sim import Fault, SimServer
from gateway.sim.answers import answer_text
from tests.builders import (
    CHAT,
    PATIENT_TIMEOUTS,
    GatewayFactory,
    SimFactory,
    admin_targets,
    chat,
    make_config,
)
from tests.waiting import eventually

PROMPT = "a long story please"
# 200 words at 50 ms apart: the stream would take ~10 s if nobody hung up.
LONG_WORDS = 200
CHUNK_INTERVAL_MS = 50
PROMPTLY_S = 1.0


async def assert_health_untouched(http: aiohttp.ClientSession, gw: Server) -> None:
    async def check() -> None:
        t = (await admin_targets(http, gw))["m1@a"]
        assert t["in_flight"] == 0
        assert t["state"] == "closed"
        assert t["window_calls"] == 0
        assert t["consecutive_failures"] == 0
        assert t["error_rate"] == 0.0
        assert t["throttled_until"] is None
        assert t["misconfigured"] is False

    await eventually(check, timeout_s=3.0)


async def assert_sim_saw_disconnect(sim: SimServer, gone_at: float, outcome: str) -> None:
    async def check() -> None:
        log = sim.state.attempts()
        assert len(log) == 1
        assert log[0]["t_end"] is not None
        assert log[0]["client_disconnected"] is True
        assert log[0]["outcome"] == outcome

    await eventually(check, timeout_s=3.0)
    t_end = sim.state.attempts()[0]["t_end"]
    assert t_end - gone_at < PROMPTLY_S, f"upstream closed {t_end - gone_at:.2f} s after client"


async def assert_gateway_still_serves(
    http: aiohttp.ClientSession, gw: Server, sim: SimServer
) -> None:
    sim.state.set_fault(Fault())
    async with http.post(gw.url + CHAT, json=chat(PROMPT, stream=False)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-attempts"] == "1"
        data = await resp.json()
    assert data["choices"][0]["message"]["content"] == answer_text(
        "sim-a", "m1", PROMPT, LONG_WORDS
    )


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimServer:
    return await sim_factory("sim-a", n_words=LONG_WORDS, chunk_interval_ms=CHUNK_INTERVAL_MS)


@pytest.fixture
async def gw(sim: SimServer, gateway_factory: GatewayFactory) -> Server:
    return await gateway_factory(
        make_config({"a": sim.base_url}, {"chat": ["m1@a"]}, timeouts=PATIENT_TIMEOUTS)
    )


async def read_content_events(resp: aiohttp.ClientResponse, wanted: int) -> list[str]:
    """Read SSE events until `wanted` of them carry content; return those contents."""
    contents: list[str] = []
    buf = b""
    while len(contents) < wanted:
        chunk = await resp.content.readany()
        assert chunk, "stream ended early"
        buf += chunk
        *events, buf = buf.split(b"\n\n")
        for event in events:
            assert event.startswith(b"data: "), event
            data = orjson.loads(event[len(b"data: ") :])
            content = data["choices"][0]["delta"].get("content")
            if content:
                contents.append(content)
    return contents


async def test_client_disconnect_mid_stream_closes_upstream(
    sim: SimServer, gw: Server, http: aiohttp.ClientSession
) -> None:
    async with http.post(gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        contents = await read_content_events(resp, 3)
        assert contents[0] == "[sim-a]"
        resp.close()  # drop the connection mid-stream
        gone_at = time.monotonic()
    assert sim.state.attempts()[0]["t_end"] is None  # the sim was still streaming
    await assert_sim_saw_disconnect(sim, gone_at, "client_disconnected")
    await assert_health_untouched(http, gw)
    await assert_gateway_still_serves(http, gw, sim)


async def test_sdk_client_closing_stream_closes_upstream(
    sim: SimServer, gw: Server, http: aiohttp.ClientSession
) -> None:
    async with openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=10
    ) as client:
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        seen = 0
        async for chunk in stream:
            if chunk.choices[0].delta.content:
                seen += 1
            if seen == 3:
                break
        await stream.close()
        gone_at = time.monotonic()
    await assert_sim_saw_disconnect(sim, gone_at, "client_disconnected")
    await assert_health_untouched(http, gw)


# (fault, stream, the sim's logged outcome)
BEFORE_FIRST_BYTE = [
    pytest.param({"mode": "hang"}, False, "hang", id="hang"),
    pytest.param({"mode": "hang"}, True, "hang", id="hang-stream"),
    # The gateway has the upstream's 200 headers but holds them until the first token.
    pytest.param(
        {"mode": "slow_first_token", "delay_s": 10}, True, "client_disconnected",
        id="slow-first-token-stream",
    ),
    pytest.param(
        {"mode": "slow_first_token", "delay_s": 10}, False, "client_disconnected",
        id="slow-body",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "stream", "outcome"), BEFORE_FIRST_BYTE)
async def test_client_disconnect_before_first_byte_cancels_upstream(
    sim: SimServer,
    gw: Server,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
    stream: bool,
    outcome: str,
) -> None:
    sim.state.set_fault(Fault.from_json(fault))
    timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(TimeoutError):
        async with http.post(
            gw.url + CHAT, json=chat(PROMPT, stream=stream), timeout=timeout
        ) as resp:
            await resp.read()
    gone_at = time.monotonic()
    await assert_sim_saw_disconnect(sim, gone_at, outcome)
    await assert_health_untouched(http, gw)
    await assert_gateway_still_serves(http, gw, sim)


async def test_client_disconnect_cancels_only_its_own_upstream_request(
    sim: SimServer, gw: Server, http: aiohttp.ClientSession
) -> None:
    # A second client reads 40 events (~2 s) while the first one leaves after 2.
    keep = asyncio.create_task(_read_some(http, gw.url + CHAT, events=40))
    await eventually(_one_attempt_running(sim), timeout_s=3.0)
    async with http.post(gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        await read_content_events(resp, 2)
        resp.close()
        gone_at = time.monotonic()

    async def only_the_leaver_closed() -> None:
        log = sim.state.attempts()
        assert len(log) == 2
        keeper, leaver = log
        assert leaver["client_disconnected"] is True
        assert leaver["t_end"] is not None
        assert keeper["t_end"] is None and keeper["outcome"] == "running"

    await eventually(only_the_leaver_closed, timeout_s=3.0)
    assert sim.state.attempts()[1]["t_end"] - gone_at < PROMPTLY_S
    text = await keep
    assert answer_text("sim-a", "m1", PROMPT, LONG_WORDS).startswith(text)
    await assert_health_untouched(http, gw)


def _one_attempt_running(sim: SimServer) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        assert [a["outcome"] for a in sim.state.attempts()] == ["running"]

    return check


async def _read_some(http: aiohttp.ClientSession, url: str, events: int) -> str:
    """Stream the first `events` content events of a long answer, then hang up."""
    async with http.post(url, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        contents = await read_content_events(resp, events)
        resp.close()
    return "".join(contents)
