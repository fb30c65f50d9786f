"""Client keys' rate limits and budgets on one gateway (the memory store: limits per
process), end to end: a real gateway, real sims. The fleet (three replicas on one Redis) is
tests/e2e/test_fleet_limits.py; the window and share logic in virtual time is
tests/unit/test_limits.py."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.config import load_data
from gateway.config.clients import digest
from gateway.edge.context import RUNTIME
from gateway.edge.server import Server
from gateway.sim import SimServer
from gateway.sim.faults import Fault
from tests.builders import (
    GatewayFactory,
    SimFactory,
    chat,
    error_of,
    post,
    scrape,
    sse_events,
    upstream_app,
    value,
)

KEY = "tk-limited-0123456789abcdefghijklmnop"
AUTH = {"Authorization": f"Bearer {KEY}"}
PRICE = {"input_per_mtok": 2.5, "output_per_mtok": 10.0}


def limited_config(sim: SimServer, limits: dict[str, Any]) -> Any:
    return load_data(
        {
            "providers": {"s": {"base_url": sim.base_url, "api_key": "key-s"}},
            "targets": {"m@s": {"provider": "s", "model": "m", "price": PRICE}},
            "routes": [{"alias": "chat", "candidates": ["m@s"]}],
            "clients": {
                "web": {"key_sha256": digest(KEY), "labels": {"team": "web"}, "limits": limits}
            },
            "resilience": {"same_target_retries": 0},
        },
        env={},
    )


async def limited(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, limits: dict[str, Any]
) -> tuple[SimServer, Server]:
    sim = await sim_factory("s")
    return sim, await gateway_factory(limited_config(sim, limits))


def spend_usd(prompt_tokens: int, completion_tokens: int) -> float:
    return (
        prompt_tokens * PRICE["input_per_mtok"] + completion_tokens * PRICE["output_per_mtok"]
    ) / 1e6


async def metrics(http: aiohttp.ClientSession, gw: Server) -> Any:
    async with http.get(gw.url + "/metrics") as resp:
        return scrape(await resp.text())


async def test_over_rpm_is_a_429_in_openais_shape_with_retry_after_and_headers(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim, gw = await limited(sim_factory, gateway_factory, {"rpm": 3})
    for left in (2, 1, 0):
        ok = await post(http, gw, chat(), headers=AUTH)
        assert ok.status == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-remaining-requests"] == str(left)
        assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-limit-tokens" not in ok.headers  # no tpm: not announced
    refused = await post(http, gw, chat(), headers=AUTH)
    err = error_of(refused, 429, "rpm_limit_exceeded")
    assert err["type"] == "rate_limit_exceeded" and err["param"] == "limits.rpm"
    assert "'web'" in err["message"] and KEY not in refused.body.decode()
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(sim.state.attempts()) == 3  # the refused request reached no provider
    m = await metrics(http, gw)
    name = "turnout_client_requests_total"
    assert value(m, name, client="web", client_team="web", result="admitted") == 3
    assert value(m, name, client="web", result="limited", limit="rpm") == 1


async def test_tokens_and_spend_are_the_sims_usage_streamed_or_not(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim, gw = await limited(sim_factory, gateway_factory, {"tpm": 1_000_000, "usd_per_day": 100})
    want_tokens, want_usd = 0, 0.0
    plain = await post(http, gw, chat("count these four words"), headers=AUTH)
    assert plain.status == 200
    assert plain.headers["x-ratelimit-limit-tokens"] == "1000000"
    u = plain.json()["usage"]
    want_tokens += u["prompt_tokens"] + u["completion_tokens"]
    want_usd += spend_usd(u["prompt_tokens"], u["completion_tokens"])
    streamed = await post(
        http,
        gw,
        chat("and now stream five words", stream=True, stream_options={"include_usage": True}),
        headers=AUTH,
    )
    usage = [orjson.loads(d)["usage"] for _, d in sse_events(streamed.body)[:-1]]
    u = next(x for x in usage if x)  # the stream's usage chunk
    want_tokens += u["prompt_tokens"] + u["completion_tokens"]
    want_usd += spend_usd(u["prompt_tokens"], u["completion_tokens"])
    meter = gw.app[RUNTIME].limits.meters["web"]
    assert meter.tokens.used == want_tokens
    assert meter.day.used == meter.month.used == round(want_usd * 1e9)
    m = await metrics(http, gw)
    assert value(m, "turnout_client_tokens_total", client="web", estimated="false") == want_tokens
    assert abs(value(m, "turnout_client_spend_USD_total", client="web") - want_usd) < 1e-12
    assert len(sim.state.attempts()) == 2


async def test_a_stream_without_usage_is_estimated_and_flagged(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _sim, gw = await limited(sim_factory, gateway_factory, {"tpm": 1_000_000})
    prompt = "no usage block in this stream please"
    reply = await post(http, gw, chat(prompt, stream=True), headers=AUTH)
    assert reply.status == 200
    text = "".join(
        (c["delta"].get("content") or "")
        for _, d in sse_events(reply.body)[:-1]
        for c in orjson.loads(d)["choices"]
    )
    want = -(-len(prompt) // 4) + -(-len(text) // 4)  # ~4 characters a token, rounded up
    assert gw.app[RUNTIME].limits.meters["web"].tokens.used == want
    m = await metrics(http, gw)
    assert value(m, "turnout_client_tokens_total", client="web", estimated="true") == want


@pytest.mark.parametrize(
    ("path", "extra"),
    [("/v1/responses", {}), ("/v1/messages", {"max_tokens": 64})],
    ids=["responses", "messages"],
)
async def test_a_translated_stream_without_usage_is_estimated_from_its_own_events(
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    path: str,
    extra: dict[str, Any],
) -> None:
    """A Responses or Messages client of an OpenAI-compatible server that sends no usage
    (whatever it is asked): the answer's tokens are estimated from the events the client got.
    Before: a Responses stream said a usage of zeros (taken for the truth: a key charged
    nothing), and the estimate read OpenAI chunks only (0 output tokens for these)."""
    said = ["Borders ", "are ", "lines ", "on ", "maps."]

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        deltas = [({"role": "assistant", "content": ""}, None)]
        deltas += [({"content": w}, None) for w in said] + [({}, "stop")]
        for delta, finish in deltas:
            chunk = {
                "id": "chatcmpl-u",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async with upstream_app(handler) as url:
        data = {
            "providers": {"s": {"base_url": url, "api_key": "key-s"}},
            "routes": [{"alias": "chat", "candidates": ["m@s"]}],
            "clients": {"web": {"key_sha256": digest(KEY), "limits": {"tpm": 1_000_000}}},
        }
        gw = await gateway_factory(load_data(data, env={}))
        prompt = "what are borders"
        text = (
            {"input": prompt}
            if path == "/v1/responses"
            else {"messages": [{"role": "user", "content": prompt}]}
        )
        body = {"model": "chat", "stream": True, **text, **extra}
        reply = await post(http, gw, body, headers=AUTH, path=path)
        assert reply.status == 200
    want = -(-len(prompt) // 4) + -(-len("".join(said)) // 4)  # ~4 characters a token
    assert gw.app[RUNTIME].limits.meters["web"].tokens.used == want
    m = await metrics(http, gw)
    assert value(m, "turnout_client_tokens_total", client="web", estimated="true") == want


async def test_tpm_admits_while_under_and_refuses_once_the_answers_used_it(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _sim, gw = await limited(sim_factory, gateway_factory, {"tpm": 5})
    first = await post(http, gw, chat("one two three four five six"), headers=AUTH)
    assert first.status == 200  # admitted while under the limit, counted after the answer
    refused = await post(http, gw, chat(), headers=AUTH)
    err = error_of(refused, 429, "tpm_limit_exceeded")
    assert err["param"] == "limits.tpm"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-limit-tokens"] == "5"


async def test_an_exhausted_budget_is_a_429_budget_exceeded_naming_it_and_its_reset(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    # One answer costs a few tens of micro-dollars: a budget of 1e-6 is spent by the first.
    sim, gw = await limited(sim_factory, gateway_factory, {"usd_per_day": 0.000001})
    assert (await post(http, gw, chat(), headers=AUTH)).status == 200
    refused = await post(http, gw, chat(), headers=AUTH)
    err = error_of(refused, 429, "budget_exceeded")
    assert err["type"] == "insufficient_quota" and err["param"] == "limits.usd_per_day"
    assert "per day" in err["message"] and "T00:00:00Z" in err["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 86_400
    assert len(sim.state.attempts()) == 1
    m = await metrics(http, gw)
    limited_by = value(m, "turnout_client_requests_total", result="limited", limit="usd_per_day")
    assert limited_by == 1


async def test_keys_without_limits_get_no_ratelimit_headers_and_are_not_refused(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _sim, gw = await limited(sim_factory, gateway_factory, {})
    for _ in range(5):
        reply = await post(http, gw, chat(), headers=AUTH)
        assert reply.status == 200
        assert not [h for h in reply.headers if h.startswith("x-ratelimit-")]
    assert gw.app[RUNTIME].limits.meters == {}


async def continued(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> tuple[SimServer, Server]:
    """A stream cut on p after 8 events and completed on b (same voice: it splices)."""
    p = await sim_factory("p", n_words=24, voice="v", chunk_interval_ms=5)
    b = await sim_factory("b", n_words=24, voice="v")
    p.state.set_fault(Fault.from_json({"mode": "cut", "after_chunks": 8}))
    config = load_data(
        {
            "providers": {
                n: {"base_url": sim.base_url, "api_key": f"key-{n}"}
                for n, sim in (("p", p), ("b", b))
            },
            "targets": {
                "m@p": {"provider": "p", "model": "m", "price": PRICE},
                "m@b": {"provider": "b", "model": "m", "price": PRICE},
            },
            "routes": [{"alias": "chat", "candidates": ["m@p", "m@b"]}],
            "clients": {"web": {"key_sha256": digest(KEY), "limits": {"tpm": 1_000_000}}},
            "resilience": {"same_target_retries": 0},
        },
        env={},
    )
    return b, await gateway_factory(config)


async def test_a_continued_stream_counts_its_usage_chunk_once_failed_attempt_included(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    b, gw = await continued(sim_factory, gateway_factory)
    body = chat("tell me about seams", stream=True, stream_options={"include_usage": True})
    reply = await post(http, gw, body, headers=AUTH)
    assert reply.status == 200 and len(b.state.attempts()) == 1  # b completed it
    chunks = [orjson.loads(d) for _, d in sse_events(reply.body)[:-1]]
    usage = next(c["usage"] for c in chunks if c.get("usage"))
    assert usage["turnout_estimated"]["failed_attempts"] == 1  # p's part, billed by b's chunk
    meter = gw.app[RUNTIME].limits.meters["web"]
    assert meter.tokens.used == usage["prompt_tokens"] + usage["completion_tokens"]
    assert meter.day.used == round(
        spend_usd(usage["prompt_tokens"], usage["completion_tokens"]) * 1e9
    )


async def test_a_continued_stream_without_usage_is_estimated_attempt_by_attempt(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    b, gw = await continued(sim_factory, gateway_factory)
    prompt = "tell me about seams"
    reply = await post(http, gw, chat(prompt, stream=True), headers=AUTH)
    assert reply.status == 200 and len(b.state.attempts()) == 1
    texts = [
        "".join(c["delta"].get("content") or "" for c in orjson.loads(d)["choices"])
        for _, d in sse_events(reply.body)[:-1]
    ]
    # p relayed the role chunk and 7 chunks of text before the cut; b the rest
    from_p, from_b = "".join(texts[:8]), "".join(texts[8:])
    per_prompt = -(-len(prompt) // 4)
    want = 2 * per_prompt + -(-len(from_p) // 4) + -(-len(from_b) // 4)
    assert gw.app[RUNTIME].limits.meters["web"].tokens.used == want


async def test_the_keys_own_ratelimit_headers_replace_the_providers(
    gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A provider that announces its own limits (the gateway's account with it): a key with
    limits sees only its own, a key without them the provider's as before."""

    async def provider(request: web.Request) -> web.Response:
        answer = {
            "id": "x",
            "object": "chat.completion",
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        theirs = {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-tokens": "999",
        }
        return web.json_response(answer, headers=theirs)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", provider)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        free = "tk-free-0123456789abcdefghijklmnop"
        config = load_data(
            {
                "providers": {"u": {"base_url": f"http://127.0.0.1:{port}/v1"}},
                "routes": [{"alias": "chat", "candidates": ["m@u"]}],
                "clients": {
                    "web": {"key_sha256": digest(KEY), "limits": {"rpm": 3}},
                    "free": {"key_sha256": digest(free)},
                },
            },
            env={},
        )
        gw = await gateway_factory(config)
        limited_reply = await post(http, gw, chat(), headers=AUTH)
        assert limited_reply.status == 200
        ours = {k: v for k, v in limited_reply.headers.items() if k.startswith("x-ratelimit-")}
        assert set(ours) == {
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        }
        assert ours["x-ratelimit-limit-requests"] == "3"
        free_reply = await post(http, gw, chat(), headers={"Authorization": f"Bearer {free}"})
        assert free_reply.headers["x-ratelimit-limit-requests"] == "10000"
        assert free_reply.headers["x-ratelimit-remaining-tokens"] == "999"
    finally:
        await runner.cleanup()


async def test_an_anthropic_client_is_metered_and_refused_in_anthropics_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The Messages ingress (here translated to the OpenAI-format sim): the key as the
    `anthropic` SDK sends it, the answers' usage counted, a 429 in Anthropic's error shape."""
    sim, gw = await limited(sim_factory, gateway_factory, {"rpm": 2, "tpm": 1_000_000})
    auth = {"x-api-key": KEY}
    body = {"model": "chat", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    plain = await post(http, gw, body, headers=auth, path="/v1/messages")
    assert plain.status == 200 and plain.headers["x-ratelimit-remaining-requests"] == "1"
    used = sum(plain.json()["usage"][k] for k in ("input_tokens", "output_tokens"))
    streamed = await post(http, gw, {**body, "stream": True}, headers=auth, path="/v1/messages")
    assert streamed.status == 200
    events = [orjson.loads(d) for _, d in sse_events(streamed.body)]
    start = next(e for e in events if e["type"] == "message_start")["message"]["usage"]
    delta = next(e for e in events if e["type"] == "message_delta")["usage"]
    used += max(start["input_tokens"], delta["input_tokens"]) + delta["output_tokens"]
    assert gw.app[RUNTIME].limits.meters["web"].tokens.used == used > 0
    refused = await post(http, gw, body, headers=auth, path="/v1/messages")
    assert refused.status == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    error = refused.json()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert len(sim.state.attempts()) == 2
