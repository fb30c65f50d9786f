"""Faults after the first content byte, with continuation off (`resilience.continuation`): the
gateway has committed to one target, so nothing is retried. (tests/e2e/test_continuation.py
covers completing the answer elsewhere.) A broken stream ends with an in-band SSE `error` event (an OpenAI error object) and
never with `data: [DONE]`; the OpenAI SDK raises on it. A stream that is complete but lacks
`[DONE]` is finished by the gateway. A few malformed events (`resilience.stream_malformed_max`,
3) are dropped and the answer goes on; one more ends the stream. Mid-stream failures count
against the target's health.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from gateway.edge.server import Server
from gateway.sim import Fault, SimServer
from gateway.sim.answers import answer_text, answer_words
from gateway.sim.delivery import reset_connection
from gateway.sim.wire import SSE_DONE, SSE_MALFORMED
from tests.builders import (
    CHAT,
    STALL_TIMEOUTS,
    GatewayFactory,
    SimFactory,
    admin_targets,
    chat,
    make_config,
    scrape,
    sse_events,
    value,
)
from tests.waiting import eventually

PROMPT = "stream me a story"
N_WORDS = 12
# Paced so a stream arrives over several socket reads (the SDK tests cover back-to-back events).
CHUNK_INTERVAL_MS = 20
ERROR_PREFIX = "The upstream stream failed after output had started"

Script = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def words(sim: str = "sim-a", n_words: int = N_WORDS) -> list[str]:
    return answer_words(sim, "m1", PROMPT, n_words)


def content_of(events: list[tuple[str | None, str]]) -> str:
    """The text carried by plain data events (not [DONE], not named events)."""
    text = []
    for name, data in events:
        if name is None and data != "[DONE]":
            for choice in orjson.loads(data)["choices"]:
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


def assert_ends_with_error(body: bytes, code: str | None = None) -> tuple[str, dict[str, Any]]:
    """The stream is content, then one `error` event, and no [DONE]; returns (text, error)."""
    assert b"[DONE]" not in body
    events = sse_events(body)
    assert events, "empty stream"
    name, data = events[-1]
    assert name == "error", events[-1]
    assert all(n is None for n, _ in events[:-1]), events
    error = orjson.loads(data)["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == "server_error"
    assert error["param"] is None
    assert error["message"].startswith(ERROR_PREFIX)
    assert error["message"].endswith("the answer is incomplete.")
    assert error["code"].startswith("upstream_")
    if code is not None:
        assert error["code"] == code
    return content_of(events[:-1]), error


async def assert_health(
    http: aiohttp.ClientSession, gw: Server, target: str, *, failures: int, calls: int
) -> None:
    async def check() -> None:
        t = (await admin_targets(http, gw))[target]
        assert t["in_flight"] == 0
        assert t["window_calls"] == calls
        assert t["consecutive_failures"] == failures
        assert t["error_rate"] == (failures / calls if calls else 0.0)

    await eventually(check)


class Setup:
    def __init__(self, a: SimServer, b: SimServer, gw: Server) -> None:
        self.a, self.b, self.gw = a, b, gw


async def start(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    *,
    a_url: str | None = None,
    n_words: int = N_WORDS,
    timeouts: dict[str, float] | None = None,
    chunk_interval_ms: float = CHUNK_INTERVAL_MS,
    malformed_max: int | None = None,
) -> Setup:
    a = await sim_factory("sim-a", n_words=n_words, chunk_interval_ms=chunk_interval_ms)
    b = await sim_factory("sim-b", n_words=n_words, chunk_interval_ms=chunk_interval_ms)
    resilience: dict[str, Any] = {"continuation": False}
    if malformed_max is not None:
        resilience["stream_malformed_max"] = malformed_max
    extra = {"resilience": resilience}
    config = make_config(
        {"a": a_url or a.base_url, "b": b.base_url},
        {"chat": ["m1@a", "m1@b"]},
        timeouts=timeouts or STALL_TIMEOUTS,
        extra=extra,
    )
    return Setup(a, b, await gateway_factory(config))


@pytest.fixture
async def setup(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Setup:
    return await start(sim_factory, gateway_factory)


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    """Start an upstream whose chat stream is written by `script(request, response)`, for
    shapes the sim cannot produce (a reset or an error event mid-stream). Returns its base URL.
    """
    runners: list[web.AppRunner] = []

    async def make(script: Script) -> str:
        async def handler(request: web.Request) -> web.StreamResponse:
            await request.read()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await script(request, resp)
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield make
    for runner in runners:
        await runner.cleanup()


SCRIPTED_PIECES = ["Hel", "lo", " wor", "ld"]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def _some_content(resp: web.StreamResponse) -> None:
    await resp.write(_chunk({"role": "assistant", "content": ""}))
    for piece in SCRIPTED_PIECES:
        await asyncio.sleep(0.02)
        await resp.write(_chunk({"content": piece}))
    await asyncio.sleep(0.05)


async def reset_mid_stream(request: web.Request, resp: web.StreamResponse) -> None:
    await _some_content(resp)
    reset_connection(request)  # RST, like the sim's "reset" mode but after content


async def error_event_mid_stream(request: web.Request, resp: web.StreamResponse) -> None:
    await _some_content(resp)
    err = {"error": {"message": "model overloaded", "type": "server_error", "code": None}}
    await resp.write(b"event: error\ndata: " + orjson.dumps(err) + b"\n\n")
    await resp.write_eof()


# --- sim faults after the first content chunk --------------------------------------------

# (fault, error code). after_chunks 5 = the role chunk and the first 4 content chunks.
# A run of malformed events: 4 in a row, one more than the default 3 that are dropped.
MALFORMED_RUN = {"mode": "garbled", "after_chunks": 5, "times": 4}
SIM_MID_STREAM = [
    pytest.param({"mode": "cut", "after_chunks": 5}, "upstream_cut", id="cut"),
    pytest.param({"mode": "stall", "after_chunks": 5}, "upstream_idle_timeout", id="stall"),
    pytest.param(MALFORMED_RUN, "upstream_malformed", id="malformed-run"),
    # One malformed line is dropped; the response then ends before a finish reason: a cut.
    pytest.param({"mode": "malformed", "after_chunks": 5}, "upstream_cut", id="malformed-then-eof"),
]


# Paced: the failure comes in a later read. Burst: the events (and, for a malformed line or a
# cut, the failure too) may arrive in the very read that carries the first token.
@pytest.mark.parametrize("interval_ms", [CHUNK_INTERVAL_MS, 0], ids=["paced", "burst"])
@pytest.mark.parametrize(("fault", "code"), SIM_MID_STREAM)
async def test_sim_mid_stream_failure_ends_with_error_event(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
    code: str,
    interval_ms: float,
) -> None:
    setup = await start(sim_factory, gateway_factory, chunk_interval_ms=interval_ms)
    setup.a.state.set_fault(Fault.from_json(fault))
    started = time.monotonic()
    async with http.post(setup.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        assert resp.headers["x-turnout-attempts"] == "1"
        body = await resp.read()
    elapsed = time.monotonic() - started
    text, _ = assert_ends_with_error(body, code)
    assert text == "".join(words()[:4])
    if fault["mode"] == "stall":  # ended by the idle timeout (0.5 s), not by anything else
        assert 0.5 <= elapsed < 2.0, elapsed
    else:
        assert elapsed < 1.0, elapsed
    # Committed: no failover, the second candidate never hears of it.
    assert setup.b.state.attempts() == []
    a_log = setup.a.state.attempts()
    assert len(a_log) == 1
    await assert_health(http, setup.gw, "m1@a", failures=1, calls=1)
    if fault["mode"] == "stall":  # the gateway hung up on the stalled upstream

        async def sim_saw_disconnect() -> None:
            assert setup.a.state.attempts()[0]["client_disconnected"] is True

        await eventually(sim_saw_disconnect)


@pytest.mark.parametrize(
    ("script", "codes"),
    [
        pytest.param(
            reset_mid_stream,
            {"upstream_connection_reset", "upstream_cut"},
            id="reset",
        ),
        pytest.param(error_event_mid_stream, {"upstream_upstream_error_event"}, id="error-event"),
    ],
)
async def test_scripted_mid_stream_failure_ends_with_error_event(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    scripted: Callable[[Script], Awaitable[str]],
    script: Script,
    codes: set[str],
) -> None:
    url = await scripted(script)
    s = await start(sim_factory, gateway_factory, a_url=url)
    async with http.post(s.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        body = await resp.read()
    text, error = assert_ends_with_error(body)
    assert error["code"] in codes
    assert text == "".join(SCRIPTED_PIECES)
    assert b"model overloaded" not in body
    assert s.b.state.attempts() == []
    await assert_health(http, s.gw, "m1@a", failures=1, calls=1)


async def test_total_timeout_mid_stream_ends_with_error_event(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s = await start(sim_factory, gateway_factory, timeouts={**STALL_TIMEOUTS, "total_s": 0.6})
    s.a.state.set_fault(Fault.from_json({"mode": "drip", "interval_s": 0.2}))  # ~3 s in all
    started = time.monotonic()
    async with http.post(s.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        body = await resp.read()
    assert 0.55 <= time.monotonic() - started < 1.5
    text, _ = assert_ends_with_error(body, "upstream_total_timeout")
    assert answer_text("sim-a", "m1", PROMPT, N_WORDS).startswith(text)
    assert text
    await assert_health(http, s.gw, "m1@a", failures=1, calls=1)


# --- malformed events after the first byte: a few are dropped, a run ends the stream ------


async def stream_metrics(http: aiohttp.ClientSession, gw: Server) -> tuple[float, float, float]:
    """(malformed events counted, successful attempts, failed attempts) of target m1@a."""
    async with http.get(gw.url + "/metrics") as r:
        samples = scrape(await r.text())
    return (
        value(samples, "turnout_stream_malformed_events_total", target="m1@a"),
        value(samples, "turnout_attempts_total", target="m1@a", outcome="success"),
        value(samples, "turnout_attempts_total", target="m1@a", outcome="provider_failure"),
    )


async def assert_metrics(
    http: aiohttp.ClientSession, gw: Server, expected: tuple[float, float, float]
) -> None:
    async def check() -> None:
        assert await stream_metrics(http, gw) == expected

    await eventually(check)


def assert_complete(body: bytes, text: str) -> None:
    """Plain data events carrying exactly `text`, then one [DONE]; no error, no bad line."""
    events = sse_events(body)
    assert events[-1] == (None, "[DONE]")
    assert body.count(b"[DONE]") == 1
    assert all(name is None for name, _ in events), events
    assert SSE_MALFORMED.strip() not in body
    assert content_of(events) == text  # every event parses: none was passed on malformed


@pytest.mark.parametrize("interval_ms", [CHUNK_INTERVAL_MS, 0], ids=["paced", "burst"])
@pytest.mark.parametrize("times", [1, 3], ids=["one", "up-to-the-limit"])
async def test_malformed_events_mid_stream_are_dropped_and_the_answer_completes(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    times: int,
    interval_ms: float,
) -> None:
    s = await start(sim_factory, gateway_factory, chunk_interval_ms=interval_ms)
    s.a.state.set_fault(Fault.from_json({"mode": "garbled", "after_chunks": 5, "times": times}))
    async with http.post(s.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        assert resp.headers["x-turnout-attempts"] == "1"
        body = await resp.read()
    assert_complete(body, answer_text("sim-a", "m1", PROMPT, N_WORDS))
    assert [a["outcome"] for a in s.a.state.attempts()] == ["garbled"]
    assert s.b.state.attempts() == []
    await assert_health(http, s.gw, "m1@a", failures=0, calls=1)
    await assert_metrics(http, s.gw, (times, 1, 0))


@pytest.mark.parametrize(
    ("malformed_max", "times"),
    [
        pytest.param(1, 2, id="run-above-a-configured-limit"),
        pytest.param(0, 1, id="strict-with-0"),  # the behaviour before issue 14
    ],
)
async def test_malformed_events_beyond_the_limit_end_the_stream(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    malformed_max: int,
    times: int,
) -> None:
    s = await start(sim_factory, gateway_factory, malformed_max=malformed_max)
    s.a.state.set_fault(Fault.from_json({"mode": "garbled", "after_chunks": 5, "times": times}))
    async with http.post(s.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        body = await resp.read()
    text, error = assert_ends_with_error(body, "upstream_malformed")
    assert "(malformed)" in error["message"]
    assert text == "".join(words()[:4])  # what came before the bad lines, and nothing after
    assert SSE_MALFORMED.strip() not in body
    assert s.b.state.attempts() == []  # committed: no failover
    await assert_health(http, s.gw, "m1@a", failures=1, calls=1)
    await assert_metrics(http, s.gw, (times, 0, 1))


async def malformed_between_pieces(request: web.Request, resp: web.StreamResponse) -> None:
    """A complete answer with a malformed line between each two of its 4 content chunks: 3
    in all, never two in a row."""
    await resp.write(_chunk({"role": "assistant", "content": ""}))
    for i, piece in enumerate(SCRIPTED_PIECES):
        if i:
            await resp.write(SSE_MALFORMED)
        await asyncio.sleep(0.01)
        await resp.write(_chunk({"content": piece}))
    await resp.write(_chunk({}, "stop"))
    await resp.write(SSE_DONE)
    await resp.write_eof()


@pytest.mark.parametrize("malformed_max", [3, 2])
async def test_malformed_events_are_counted_per_stream_not_per_run(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    scripted: Callable[[Script], Awaitable[str]],
    malformed_max: int,
) -> None:
    url = await scripted(malformed_between_pieces)
    s = await start(sim_factory, gateway_factory, a_url=url, malformed_max=malformed_max)
    async with http.post(s.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        body = await resp.read()
    if malformed_max == 3:
        assert_complete(body, "".join(SCRIPTED_PIECES))
        await assert_metrics(http, s.gw, (3, 1, 0))
    else:  # the third one ends it, though none came right after another
        text, _ = assert_ends_with_error(body, "upstream_malformed")
        assert text == "".join(SCRIPTED_PIECES[:3])
        await assert_metrics(http, s.gw, (3, 0, 1))


# --- the OpenAI SDK raises on the in-band error ------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"mode": "cut", "after_chunks": 5}, id="cut"),
        pytest.param({"mode": "stall", "after_chunks": 5}, id="stall"),
        pytest.param(MALFORMED_RUN, id="malformed-run"),
    ],
)
async def test_sdk_stream_raises_api_error(setup: Setup, fault: dict[str, Any], kind: str) -> None:
    setup.a.state.set_fault(Fault.from_json(fault))
    base_url = setup.gw.url + "/v1"
    received: list[str] = []
    messages: list[Any] = [{"role": "user", "content": PROMPT}]
    if kind == "sync":

        def run() -> None:
            with openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=10) as c:
                stream = c.chat.completions.create(model="chat", messages=messages, stream=True)
                with stream:
                    for chunk in stream:
                        received.append(chunk.choices[0].delta.content or "")

        with pytest.raises(openai.APIError) as info:
            await asyncio.to_thread(run)
    else:
        async with openai.AsyncOpenAI(
            base_url=base_url, api_key="k", max_retries=0, timeout=10
        ) as client:
            stream = await client.chat.completions.create(
                model="chat", messages=messages, stream=True
            )
            with pytest.raises(openai.APIError) as info:
                async with stream:
                    async for chunk in stream:
                        received.append(chunk.choices[0].delta.content or "")
    # The in-band error itself, not a transport failure.
    assert type(info.value) is openai.APIError
    assert info.value.message.startswith(ERROR_PREFIX)
    assert isinstance(info.value.body, dict)
    assert info.value.body["code"].startswith("upstream_")
    assert "".join(received) == "".join(words()[:4])


async def test_sdk_stream_gets_the_whole_answer_past_a_malformed_event(setup: Setup) -> None:
    setup.a.state.set_fault(Fault.from_json({"mode": "garbled", "after_chunks": 5}))
    async with openai.AsyncOpenAI(
        base_url=setup.gw.url + "/v1", api_key="k", max_retries=0, timeout=10
    ) as client:
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        async with stream:
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == answer_text("sim-a", "m1", PROMPT, N_WORDS)


# --- streams that are slow or lack [DONE] but are complete -------------------------------


async def test_stream_without_done_is_completed_by_the_gateway(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    setup.a.state.set_fault(Fault.from_json({"mode": "no_done"}))
    async with http.post(setup.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        body = await resp.read()
    events = sse_events(body)
    assert events[-1] == (None, "[DONE]")
    assert body.count(b"[DONE]") == 1
    assert all(name is None for name, _ in events)
    assert content_of(events) == answer_text("sim-a", "m1", PROMPT, N_WORDS)
    finishes = [
        c["finish_reason"]
        for _, d in events[:-1]
        for c in orjson.loads(d)["choices"]
        if c["finish_reason"]
    ]
    assert finishes == ["stop"]
    assert [a["outcome"] for a in setup.a.state.attempts()] == ["no_done"]
    assert setup.b.state.attempts() == []
    await assert_health(http, setup.gw, "m1@a", failures=0, calls=1)


async def test_stream_without_done_via_sdk(setup: Setup) -> None:
    setup.a.state.set_fault(Fault.from_json({"mode": "no_done"}))
    async with openai.AsyncOpenAI(
        base_url=setup.gw.url + "/v1", api_key="k", max_retries=0, timeout=10
    ) as client:
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        async with stream:
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == answer_text("sim-a", "m1", PROMPT, N_WORDS)


async def test_drip_within_idle_timeout_completes(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    n_words = 4  # role, "[sim-a]", 4 words, ".", finish: 8 events, 7 gaps
    s = await start(sim_factory, gateway_factory, n_words=n_words)
    s.a.state.set_fault(Fault.from_json({"mode": "drip", "interval_s": 0.15}))  # idle_s 0.5
    started = time.monotonic()
    async with http.post(s.gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        body = await resp.read()
    assert time.monotonic() - started >= 7 * 0.15 - 0.05  # it really dripped
    events = sse_events(body)
    assert events[-1] == (None, "[DONE]")
    assert all(name is None for name, _ in events)
    assert content_of(events) == answer_text("sim-a", "m1", PROMPT, n_words)
    assert [a["outcome"] for a in s.a.state.attempts()] == ["completed"]
    assert s.b.state.attempts() == []
    await assert_health(http, s.gw, "m1@a", failures=0, calls=1)


async def test_burst_stream_is_relayed_whole(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Regression: events that arrived in the same socket read as the first token were
    dropped, leaving a hole in the text (ended by [DONE] or by a bogus cut error)."""
    fast = await sim_factory("sim-fast", n_words=40)  # every event written at once
    gw = await gateway_factory(make_config({"a": fast.base_url}, {"chat": ["m1@a"]}))
    for _ in range(3):
        async with http.post(gw.url + CHAT, json=chat(PROMPT, stream=True)) as resp:
            assert resp.status == 200
            body = await resp.read()
        events = sse_events(body)
        assert events[-1] == (None, "[DONE]"), events[-1]
        assert content_of(events) == answer_text("sim-fast", "m1", PROMPT, 40)
    health = (await admin_targets(http, gw))["m1@a"]
    assert health["consecutive_failures"] == 0
