"""Regression tests for the defects of issue 12, against a real gateway and a real sim.

Each test failed before its fix."""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Any

import aiohttp
import orjson

from gateway.edge.accept import MAX_DEPTH, too_deep
from gateway.sim.faults import Fault
from tests.builders import (
    CHAT,
    LONG_ANSWER_TIMEOUTS,
    GatewayFactory,
    SimFactory,
    admin_targets,
    chat,
    make_config,
)
from tests.waiting import until


def nested_body(depth: int) -> bytes:
    """A chat request that parses (orjson reads 1024 levels) but has `depth` nested lists."""
    head = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"x":'
    return head + b"[" * depth + b"]" * depth + b"}"


async def test_deep_nesting_is_a_400_before_any_target_and_leaks_no_permit(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    sim = await sim_factory("sim-a")
    gw = await gateway_factory(make_config({"a": sim.base_url}, {"chat": ["m1@a"]}))
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(
                gw.url + CHAT,
                data=nested_body(300),
                headers={"Content-Type": "application/json"},
            ) as resp:
                body = await resp.json()
                assert resp.status == 400, body
                assert body["error"]["code"] == "too_deeply_nested"
                assert body["error"]["type"] == "invalid_request_error"
        assert sim.state.attempts() == []  # no target was touched
        health = await admin_targets(http, gw)
        assert health["m1@a"]["in_flight"] == 0
        # The target still serves, and its slot comes back after a real answer.
        async with http.post(
            gw.url + CHAT, data=nested_body(100), headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        assert (await admin_targets(http, gw))["m1@a"]["in_flight"] == 0


def test_the_nesting_check_agrees_with_what_orjson_can_write() -> None:
    import random

    rng = random.Random(5)
    for _ in range(300):
        depth = rng.randint(MAX_DEPTH - 3, MAX_DEPTH + 3)
        value: Any = "leaf"
        for _ in range(depth):
            value = [value, 1] if rng.random() < 0.5 else {"k": value, "s": "x" * 10}
        try:
            orjson.dumps(value)
            writable = True
        except TypeError:
            writable = False
        assert too_deep(value) is not writable, depth


async def test_a_huge_deadline_header_is_a_400_and_traces_stay_readable(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    sim = await sim_factory("sim-a")
    gw = await gateway_factory(make_config({"a": sim.base_url}, {"chat": ["m1@a"]}))
    good = orjson.dumps(chat())
    async with aiohttp.ClientSession() as http:
        for value in ("1e300", "86400001"):
            async with http.post(
                gw.url + CHAT,
                data=good,
                headers={"Content-Type": "application/json", "x-turnout-deadline-ms": value},
            ) as resp:
                body = await resp.json()
                assert resp.status == 400, body
                assert body["error"]["param"] == "x-turnout-deadline-ms"
        async with http.post(
            gw.url + CHAT,
            data=good,
            headers={"Content-Type": "application/json", "x-turnout-deadline-ms": "86400000"},
        ) as resp:
            assert resp.status == 200
        async with http.get(gw.url + "/admin/traces") as resp:
            assert resp.status == 200, await resp.text()


def test_reasoning_and_audio_deltas_are_output_for_the_commit_point() -> None:
    from gateway.upstream.sse import inspect

    for delta in (
        {"reasoning": "thinking"},
        {"reasoning_content": "thinking"},
        {"audio": {"id": "a1", "data": "UklGRg=="}},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]},
        {"refusal": "no"},
    ):
        event = b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": delta}]})
        assert inspect(event).content, delta
    empty = b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    assert not inspect(empty).content


async def test_a_provider_redirect_is_not_followed_and_fails_over(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    from aiohttp import web

    seen: list[dict[str, str]] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"stolen": True})

    async def redirecting(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(other_url) + "/v1/chat/completions")

    other = web.Application()
    other.router.add_post("/v1/chat/completions", elsewhere)
    bad = web.Application()
    bad.router.add_post("/v1/chat/completions", redirecting)
    runners = [web.AppRunner(other), web.AppRunner(bad)]
    urls = []
    for runner in runners:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    other_url, bad_url = urls
    try:
        sim = await sim_factory("sim-b")
        config = make_config({"a": bad_url + "/v1", "b": sim.base_url}, {"chat": ["m1@a", "m1@b"]})
        gw = await gateway_factory(config)
        good = orjson.dumps(chat())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                gw.url + CHAT, data=good, headers={"Content-Type": "application/json"}
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            assert resp.headers["x-turnout-target"] == "m1@b"
            assert resp.headers["x-turnout-attempts"] == "2"
        assert seen == []  # neither the prompt nor the provider's key went to the other host
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_the_sim_refuses_a_huge_embedding_dimension(sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim-a")
    body = {"model": "m1", "input": "hi", "dimensions": 10**9}
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/embeddings", json=body) as resp:
            reply = await resp.json()
            assert resp.status == 400, reply
            assert reply["error"]["param"] == "dimensions"
        body["dimensions"] = 16
        async with http.post(sim.base_url + "/embeddings", json=body) as resp:
            assert resp.status == 200
            assert len((await resp.json())["data"][0]["embedding"]) == 16


# --- issue 12 item 2: long non-streaming answers ------------------------------------------

# LONG_ANSWER_TIMEOUTS: first_token_s and headers_s are short; a non-streaming answer gets the
# whole total_s.
PLAIN = {"Content-Type": "application/json"}
GOOD = orjson.dumps(chat())


async def _pair(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> tuple[Any, ...]:
    a, b = await sim_factory("sim-a"), await sim_factory("sim-b")
    gw = await gateway_factory(
        make_config(
            {"a": a.base_url, "b": b.base_url},
            {"chat": ["m1@a", "m1@b"]},
            timeouts=LONG_ANSWER_TIMEOUTS,
        )
    )
    return a, b, gw


async def test_a_non_streaming_answer_slower_than_first_token_s_is_served(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    a, b, gw = await _pair(sim_factory, gateway_factory)
    # The whole answer takes 0.5 s: past first_token_s (0.3), within total_s (0.8).
    a.state.set_fault(Fault.from_json({"mode": "slow_first_token", "delay_s": 0.5}))
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.url + CHAT, data=GOOD, headers=PLAIN) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-turnout-target"] == "m1@a"
        assert resp.headers["x-turnout-attempts"] == "1"
        # The body names the model that answered; the header, what the caller asked for.
        assert (await resp.json())["model"] == "m1"
        assert resp.headers["x-turnout-alias"] == "chat"
    assert b.state.attempts() == []  # not re-sent
    assert [x["outcome"] for x in a.state.attempts()] == ["completed"]


async def test_a_non_streaming_answer_past_total_s_is_not_re_sent_without_a_deadline(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    a, b, gw = await _pair(sim_factory, gateway_factory)
    a.state.set_fault(Fault.from_json({"mode": "hang"}))
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + CHAT, data=GOOD, headers=PLAIN) as resp:
            body = await resp.json()
            assert resp.status == 504, body
            assert resp.headers["x-turnout-attempts"] == "1"
        assert body["error"]["code"] == "upstream_timeout"
        message = body["error"]["message"]
        assert "total_timeout" in message and "not re-sent" in message
        assert "x-turnout-deadline-ms" in message
        assert b.state.attempts() == []  # one generation billed, not N
        assert (await admin_targets(http, gw))["m1@a"]["in_flight"] == 0


async def test_a_non_streaming_answer_past_total_s_is_re_sent_within_a_deadline(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    a, b, gw = await _pair(sim_factory, gateway_factory)
    a.state.set_fault(Fault.from_json({"mode": "hang"}))
    headers = {**PLAIN, "x-turnout-deadline-ms": "5000"}
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.url + CHAT, data=GOOD, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-turnout-target"] == "m1@b"
        assert resp.headers["x-turnout-attempts"] == "2"
    assert 0.7 < time.monotonic() - started < 3.0  # a's total_s, then b at once
    assert len(b.state.attempts()) == 1


# --- issue 12 item 8: memory of large bodies in flight ---------------------------------------


async def test_large_bodies_in_flight_are_bounded_and_the_bound_frees(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    from gateway.edge.context import RUNTIME

    sim = await sim_factory("sim-a", latency_ms=1000)
    server = {"host": "127.0.0.1", "port": 0, "max_body_bytes": 4096}
    server["max_body_bytes_in_flight"] = 6000  # one 3 KB body at a time, not two
    gw = await gateway_factory(
        make_config({"a": sim.base_url}, {"chat": ["m1@a"]}, extra={"server": server})
    )
    big = orjson.dumps(chat("x" * 3000))
    async with aiohttp.ClientSession() as http:

        async def post() -> tuple[int, dict[str, Any], dict[str, str]]:
            async with http.post(gw.url + CHAT, data=big, headers=PLAIN) as r:
                return r.status, await r.json(), dict(r.headers)

        def held_by_one() -> bool:
            return bool(gw.app[RUNTIME].body_bytes.held >= 3000)

        first = asyncio.create_task(post())
        await until(held_by_one)  # the first is waiting on the slow sim, its body held
        status, body, headers = await post()
        assert status == 503, body
        assert body["error"]["code"] == "overloaded"
        assert body["error"]["type"] == "service_unavailable"
        assert headers["Retry-After"] == "1"
        assert (await first)[0] == 200
        assert gw.app[RUNTIME].body_bytes.held == 0  # given back
        assert (await post())[0] == 200  # and the next one is admitted
        # Small requests are admitted next to a large one, compressed ones too (their size
        # counts as it arrives, not as max_body_bytes up front).
        first = asyncio.create_task(post())
        await until(held_by_one)
        async with http.post(gw.url + CHAT, data=GOOD, headers=PLAIN) as r:
            assert r.status == 200
        zipped = {**PLAIN, "Content-Encoding": "gzip"}
        async with http.post(gw.url + CHAT, data=gzip.compress(GOOD), headers=zipped) as r:
            assert r.status == 200, await r.text()
        assert (await first)[0] == 200
    assert len(sim.state.attempts()) == 5


async def test_a_caller_deadline_running_out_mid_stream_is_not_the_providers_fault(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    sim = await sim_factory("sim-a", chunk_interval_ms=100, n_words=40)  # ~4 s of answer
    body = chat(stream=True)
    headers = {"x-turnout-deadline-ms": "600"}
    timeouts = {**LONG_ANSWER_TIMEOUTS, "total_s": 30.0}
    gw = await gateway_factory(
        make_config({"a": sim.base_url}, {"chat": ["m1@a"]}, timeouts=timeouts)
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + CHAT, json=body, headers=headers) as resp:
            assert resp.status == 200
            text = (await resp.read()).decode()
        assert '"code":"deadline_exceeded"' in text.replace(" ", "")
        assert "data: [DONE]" not in text  # never a truncated answer passed off as whole
        a = (await admin_targets(http, gw))["m1@a"]
        assert (a["consecutive_failures"], a["window_calls"], a["in_flight"]) == (0, 0, 0)
