"""The simulated provider: deterministic answers, OpenAI wire format, every fault mode as a
client sees it over a real loopback socket, the control API and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from gateway.sim import (
    Fault,
    SimServer,
    SimSettings,
    SimState,
    answer_text,
    answer_words,
    build_sim_app,
)
from gateway.sim.answers import embedding_vector, prompt_of
from gateway.sim.cli import add_sim_arguments, run_sim
from tests.builders import chat
from tests.waiting import until

PROMPT = "hello there"
CHAT: dict[str, Any] = chat(PROMPT, model="sim-small")  # a body, sent to the sim directly
STREAM: dict[str, Any] = {**CHAT, "stream": True}
N_WORDS = 5
# With N_WORDS words a chat stream has: role chunk, "[name]", N_WORDS words, ".", finish chunk.
N_CHAT_EVENTS = N_WORDS + 4


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = await SimServer("sim-a", n_words=N_WORDS).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def read_events(resp: aiohttp.ClientResponse, into: list[bytes]) -> None:
    """Append each SSE ``data:`` payload to ``into`` (so a caller keeps them on errors)."""
    async for line in resp.content:
        if line.startswith(b"data: "):
            into.append(line[len(b"data: ") :].rstrip(b"\n"))


def last(sim: SimServer) -> dict[str, Any]:
    return sim.state.attempts()[-1]


def expected(model: str = "sim-small", prompt: str = PROMPT) -> str:
    return answer_text("sim-a", model, prompt, N_WORDS)


# --- answers -------------------------------------------------------------------------------


def test_answers_are_deterministic_named_and_end_with_a_period() -> None:
    words = answer_words("sim-a", "m", "p", 7)
    assert words == answer_words("sim-a", "m", "p", 7)
    assert "".join(words) == answer_text("sim-a", "m", "p", 7)
    assert words[0] == "[sim-a]" and words[-1] == "." and len(words) == 9
    assert answer_text("sim-a", "m", "q", 7) != answer_text("sim-a", "m", "p", 7)
    assert answer_text("sim-a", "m2", "p", 7) != answer_text("sim-a", "m", "p", 7)
    assert "".join(words[:-1]) != answer_text("sim-a", "m", "p", 7)


def test_prompt_of_reads_last_user_message_or_prompt() -> None:
    chat = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]
    }
    assert prompt_of(chat) == "second"
    assert prompt_of({"prompt": "legacy"}) == "legacy"
    assert prompt_of({"prompt": ["a", "b"]}) == "a\nb"


def test_embedding_vector_is_deterministic_unit_length() -> None:
    vector = embedding_vector("abc", 16)
    assert vector == embedding_vector("abc", 16) != embedding_vector("abd", 16)
    assert len(vector) == 16
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-9


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "json"),
    [
        ("ok", {"mode": "ok"}),
        ("status:503", {"mode": "status", "status": 503}),
        ("status:429:2", {"mode": "status", "status": 429, "retry_after": 2.0}),
        (
            "status:429:Wed, 21 Oct 2015 07:28:00 GMT",
            {"mode": "status", "status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"},
        ),
        ("hang", {"mode": "hang"}),
        ("reset", {"mode": "reset"}),
        ("slow_first_token:20", {"mode": "slow_first_token", "delay_s": 20.0}),
        ("cut:5", {"mode": "cut", "after_chunks": 5}),
        ("stall:5", {"mode": "stall", "after_chunks": 5}),
        ("malformed:5", {"mode": "malformed", "after_chunks": 5}),
        ("garbled", {"mode": "garbled", "after_chunks": 3, "times": 1}),
        ("garbled:5", {"mode": "garbled", "after_chunks": 5, "times": 1}),
        ("garbled:5:4", {"mode": "garbled", "after_chunks": 5, "times": 4}),
        ("no_done", {"mode": "no_done"}),
        ("drip:0.3", {"mode": "drip", "interval_s": 0.3}),
        ("status:500*2", {"mode": "status", "status": 500, "count": 2}),
        ('{"mode": "status", "status": 400, "code": "context_length_exceeded"}', None),
    ],
)
def test_fault_spec_parses_like_json(spec: str, json: dict[str, Any] | None) -> None:
    fault = Fault.parse_spec(spec)
    if json is not None:
        assert fault == Fault.from_json(json)
        assert fault.to_json() == json
    assert Fault.from_json(fault.to_json()) == fault


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"mode": "explode"}, "unknown fault mode"),
        ({"status": 503}, "unknown fault mode"),
        ([1], "JSON object"),
        ({"mode": "status"}, "needs a 'status'"),
        ({"mode": "status", "status": 200}, "between 400 and 599"),
        ({"mode": "status", "status": "503"}, "'status' must be an integer"),
        ({"mode": "status", "status": 429, "retry_after": -1}, "retry_after"),
        ({"mode": "ok", "delay_s": 1}, "unknown key(s) 'delay_s'"),
        ({"mode": "slow_first_token", "delay_s": -1}, "'delay_s' must be >= 0"),
        ({"mode": "cut", "after_chunks": 1.5}, "'after_chunks' must be an integer"),
        ({"mode": "ok", "count": 0}, "'count' must be >= 1"),
        ({"mode": "ok", "count": True}, "'count' must be an integer"),
        ({"mode": "garbled", "times": 0}, "'times' must be >= 1"),
        ({"mode": "cut", "times": 2}, "unknown key(s) 'times'"),
    ],
)
def test_bad_fault_json_is_rejected_with_a_clear_message(data: Any, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        Fault.from_json(data)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "spec",
    ["", "nope", "status", "status:abc", "cut:x", "hang:3", "ok*0", "cut:1:2", "garbled:1:2:3"],
)
def test_bad_fault_spec_is_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="bad fault spec"):
        Fault.parse_spec(spec)


def test_fault_count_runs_out_to_ok() -> None:
    fault = Fault.parse_spec("hang*2")
    assert fault.consumed() == Fault(mode="hang", count=1)
    assert fault.consumed().consumed() == Fault()
    assert Fault.parse_spec("hang").consumed() == Fault(mode="hang")


# --- the OpenAI SDK parses the sim ---------------------------------------------------------


async def test_async_openai_sdk_chat_completions_embeddings_models(sim: SimServer) -> None:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as client:
        chat = await client.chat.completions.create(model="any-model", messages=CHAT["messages"])
        assert chat.model == "any-model"
        assert chat.choices[0].message.content == expected("any-model")
        assert chat.choices[0].finish_reason == "stop"
        assert chat.usage is not None and chat.usage.prompt_tokens == 2
        assert chat.usage.completion_tokens == N_WORDS + 1

        stream = await client.chat.completions.create(
            model="any-model",
            messages=CHAT["messages"],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts, usage, finish = [], None, None
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
        assert "".join(parts) == chat.choices[0].message.content
        assert finish == "stop" and usage == chat.usage

        legacy = await client.completions.create(model="sim-large", prompt=PROMPT)
        assert legacy.choices[0].text == expected("sim-large")
        pieces = [
            c.choices[0].text
            async for c in await client.completions.create(
                model="sim-large", prompt=PROMPT, stream=True
            )
        ]
        assert "".join(pieces) == legacy.choices[0].text

        emb = await client.embeddings.create(model="emb", input=["a b", "c"])  # base64 by default
        for item, text in zip(emb.data, ["a b", "c"], strict=True):
            assert item.embedding == pytest.approx(embedding_vector(text, 8), rel=1e-6)
        assert emb.usage.prompt_tokens == 3
        floats = await client.embeddings.create(
            model="emb", input="a b", dimensions=3, encoding_format="float"
        )
        assert floats.data[0].embedding == embedding_vector("a b", 3)

        models = await client.models.list()
        assert [m.id for m in models.data] == ["sim-small", "sim-large"]


async def test_sync_openai_sdk_streams(sim: SimServer) -> None:
    def run() -> tuple[str, str]:
        with openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as client:
            whole = client.chat.completions.create(model="m", messages=CHAT["messages"])
            stream = client.chat.completions.create(
                model="m", messages=CHAT["messages"], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            return whole.choices[0].message.content or "", text

    whole, streamed = await asyncio.to_thread(run)
    assert whole == streamed == expected("m")


async def test_openai_sdk_raises_typed_errors_for_status_faults(sim: SimServer) -> None:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as client:
        sim.state.set_fault(Fault.parse_spec("status:429:2"))
        with pytest.raises(openai.RateLimitError) as rate:
            await client.chat.completions.create(model="m", messages=CHAT["messages"])
        assert rate.value.response.headers["retry-after"] == "2"
        assert rate.value.code == "rate_limit_exceeded"
        sim.state.set_fault(
            Fault.from_json({"mode": "status", "status": 400, "code": "context_length_exceeded"})
        )
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=CHAT["messages"])
        assert bad.value.code == "context_length_exceeded"
        assert bad.value.param == "messages"


# --- the wire format -----------------------------------------------------------------------


async def test_stream_wire_format_is_exact(sim: SimServer, session: aiohttp.ClientSession) -> None:
    body = {**STREAM, "stream_options": {"include_usage": True}}
    async with session.post(sim.base_url + "/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["x-sim-name"] == "sim-a"
        raw = await resp.read()
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b"" and blocks[-2] == b"data: [DONE]"
    assert all(b.startswith(b"data: ") for b in blocks[:-1])
    chunks = [orjson.loads(b[len(b"data: ") :]) for b in blocks[:-2]]
    assert len(chunks) == N_CHAT_EVENTS + 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 2 + N_WORDS + 1
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == expected()


async def test_request_errors_use_the_openai_error_shape(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    url = sim.base_url + "/chat/completions"
    async with session.post(
        url, data=b"{not json", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400
        error = (await r.json())["error"]
        assert error["type"] == "invalid_request_error" and "JSON" in error["message"]
        assert set(error) == {"message", "type", "code", "param"}
    async with session.post(url, json={"messages": CHAT["messages"]}) as r:
        assert r.status == 400 and (await r.json())["error"]["param"] == "model"
    async with session.get(sim.base_url + "/nope") as r:
        assert r.status == 404 and (await r.json())["error"]["type"] == "invalid_request_error"
    assert last(sim)["request_body"] == {"messages": CHAT["messages"]}


async def test_api_key_is_enforced_when_set(session: aiohttp.ClientSession) -> None:
    async with SimServer("locked", api_key="k1") as sim:
        url = sim.base_url + "/chat/completions"
        async with session.post(url, json=CHAT) as r:
            assert r.status == 401
            assert (await r.json())["error"]["type"] == "authentication_error"
        async with session.post(url, json=CHAT, headers={"Authorization": "Bearer k1"}) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (403, "permission_error"), (500, "server_error")],
)
async def test_status_fault_sends_error_body(
    sim: SimServer, session: aiohttp.ClientSession, status: int, kind: str
) -> None:
    sim.state.set_fault(Fault(mode="status", status=status, message="boom"))
    async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
        assert r.status == status and "Retry-After" not in r.headers
        assert (await r.json())["error"] == {
            "message": "boom",
            "type": kind,
            "code": None,
            "param": None,
        }
    assert last(sim)["status"] == status and last(sim)["outcome"] == "completed"


async def test_retry_after_http_date_is_sent_verbatim(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    sim.state.set_fault(Fault.parse_spec(f"status:429:{date}"))
    async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
        assert r.status == 429 and r.headers["Retry-After"] == date


# --- faults as a client sees them ----------------------------------------------------------


async def test_hang_never_sends_headers_and_logs_the_disconnect(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    sim.state.set_fault(Fault(mode="hang"))
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            sim.base_url + "/chat/completions", json=CHAT, timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass
    gave_up = time.monotonic()
    await until(lambda: last(sim)["client_disconnected"], timeout_s=0.5)
    entry = last(sim)
    assert entry["outcome"] == "hang" and entry["status"] is None
    assert entry["t_end"] - gave_up < 0.2


async def test_hang_sees_disconnect_without_handler_cancellation(
    session: aiohttp.ClientSession,
) -> None:
    state = SimState(fault=Fault(mode="hang"))
    runner = web.AppRunner(build_sim_app(state))  # handler_cancellation off: the poll finds it
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=CHAT,
                timeout=aiohttp.ClientTimeout(total=0.1),
            ):
                pass
        await until(lambda: state.attempts()[-1]["client_disconnected"], timeout_s=0.5)
    finally:
        await runner.cleanup()


async def test_reset_aborts_the_connection(sim: SimServer, session: aiohttp.ClientSession) -> None:
    sim.state.set_fault(Fault(mode="reset"))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
            await r.read()
    assert last(sim)["outcome"] == "reset" and last(sim)["status"] is None


async def test_slow_first_token_sends_headers_then_waits(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    sim.state.set_fault(Fault(mode="slow_first_token", delay_s=0.3))
    start = time.monotonic()
    async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
        headers_after = time.monotonic() - start
        events: list[bytes] = []
        await read_events(r, events)
    assert headers_after < 0.2 and time.monotonic() - start >= 0.3
    assert events[-1] == b"[DONE]" and len(events) == N_CHAT_EVENTS + 1
    start = time.monotonic()
    async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
        assert time.monotonic() - start >= 0.3
        assert (await r.json())["choices"][0]["message"]["content"] == expected()


async def test_cut_ends_the_stream_early_without_done(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    sim.state.set_fault(Fault(mode="cut", after_chunks=3))
    events: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
            assert r.status == 200
            await read_events(r, events)
    assert len(events) == 3 and b"[DONE]" not in events
    assert last(sim)["outcome"] == "cut"
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
            assert r.status == 200
            await r.read()


async def test_stall_goes_silent_until_the_client_leaves(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    sim.state.set_fault(Fault(mode="stall", after_chunks=2))
    events: list[bytes] = []
    async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(read_events(r, events), 0.2)
        assert len(events) == 2
        r.close()
    await until(lambda: last(sim)["client_disconnected"], timeout_s=1.0)
    assert last(sim)["outcome"] == "stalled"
    async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
        assert r.status == 200
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.read(), 0.2)
        r.close()
    await until(lambda: last(sim)["client_disconnected"], timeout_s=1.0)


async def test_malformed_sends_bad_json_and_no_done(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    sim.state.set_fault(Fault(mode="malformed", after_chunks=2))
    events: list[bytes] = []
    async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
        await read_events(r, events)
    assert len(events) == 3 and b"[DONE]" not in events
    orjson.loads(events[1])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[2])
    async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
        assert r.status == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(await r.read())
    assert last(sim)["outcome"] == "malformed"


@pytest.mark.parametrize(
    ("after_chunks", "times"), [(2, 1), (2, 3), (0, 1), (N_CHAT_EVENTS, 2), (99, 1)]
)
async def test_garbled_sends_bad_lines_inside_a_complete_stream(
    sim: SimServer, session: aiohttp.ClientSession, after_chunks: int, times: int
) -> None:
    sim.state.set_fault(Fault(mode="garbled", after_chunks=after_chunks, times=times))
    events: list[bytes] = []
    async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
        assert r.status == 200
        await read_events(r, events)
    assert len(events) == N_CHAT_EVENTS + times + 1
    assert events[-1] == b"[DONE]"
    at = min(after_chunks, N_CHAT_EVENTS)  # the bad lines come in a row after `at` events
    bad = events[at : at + times]
    good = events[:at] + events[at + times : -1]
    for raw in bad:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
    chunks = [orjson.loads(raw) for raw in good]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == expected()
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert last(sim)["outcome"] == "garbled"
    async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
        assert (await r.json())["choices"][0]["message"]["content"] == expected()


async def test_no_done_sends_a_complete_stream_without_done(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    sim.state.set_fault(Fault(mode="no_done"))
    events: list[bytes] = []
    async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
        await read_events(r, events)
    assert len(events) == N_CHAT_EVENTS and b"[DONE]" not in events
    assert orjson.loads(events[-1])["choices"][0]["finish_reason"] == "stop"
    assert last(sim)["outcome"] == "no_done"


async def test_drip_spaces_a_valid_stream(sim: SimServer, session: aiohttp.ClientSession) -> None:
    sim.state.set_fault(Fault(mode="drip", interval_s=0.02))
    events: list[bytes] = []
    start = time.monotonic()
    async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
        await read_events(r, events)
    assert time.monotonic() - start >= 0.02 * (N_CHAT_EVENTS - 1)
    assert events[-1] == b"[DONE]" and len(events) == N_CHAT_EVENTS + 1
    async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
        assert (await r.json())["choices"][0]["message"]["content"] == expected()
    assert last(sim)["outcome"] == "completed"


async def test_count_limits_a_fault_to_the_next_requests(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    url = sim.base_url + "/chat/completions"
    async with session.put(
        sim.url + "/_sim/fault", json={"mode": "status", "status": 503, "count": 1}
    ) as r:
        assert r.status == 200
    async with session.post(url, json=CHAT) as r:
        assert r.status == 503
        assert (await r.json())["error"]["type"] == "server_error"
    async with session.get(sim.url + "/_sim/fault") as r:
        assert await r.json() == {"mode": "ok"}
    async with session.post(url, json=CHAT) as r:
        assert r.status == 200


async def test_client_disconnect_mid_stream_is_logged(
    session: aiohttp.ClientSession,
) -> None:
    async with SimServer("slow", chunk_interval_ms=50) as sim:
        async with session.post(sim.base_url + "/chat/completions", json=STREAM) as r:
            await r.content.readline()
            r.close()
        await until(lambda: last(sim)["client_disconnected"], timeout_s=1.0)
        assert last(sim)["outcome"] == "client_disconnected"


async def test_latency_delays_headers(session: aiohttp.ClientSession) -> None:
    async with SimServer("late", latency_ms=150) as sim:
        start = time.monotonic()
        async with session.get(sim.base_url + "/models") as r:
            assert r.status == 200
        assert time.monotonic() - start >= 0.15


async def test_close_ends_hung_requests_promptly(session: aiohttp.ClientSession) -> None:
    sim = await SimServer(fault=Fault(mode="hang")).start()
    request = asyncio.ensure_future(session.post(sim.base_url + "/chat/completions", json=CHAT))
    await until(lambda: bool(sim.state.attempts()), timeout_s=1.0)
    start = time.monotonic()
    await sim.close()
    assert time.monotonic() - start < 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await request
    assert last(sim)["outcome"] == "hang" and not last(sim)["client_disconnected"]


# --- control API ---------------------------------------------------------------------------


async def test_control_api_sets_faults_and_reads_the_log(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    async with session.put(sim.url + "/_sim/fault", json={"mode": "cut", "after_chunks": 2}) as r:
        assert r.status == 200 and await r.json() == {"mode": "cut", "after_chunks": 2}
    async with session.put(sim.url + "/_sim/fault", json={"mode": "warp"}) as r:
        assert r.status == 400 and "unknown fault mode" in (await r.json())["error"]["message"]
    async with session.put(sim.url + "/_sim/fault", data=b"{") as r:
        assert r.status == 400
    async with session.get(sim.url + "/_sim/fault") as r:
        assert await r.json() == {"mode": "cut", "after_chunks": 2}
    async with session.put(sim.url + "/_sim/fault", json={"mode": "ok"}):
        pass
    headers = {
        "Authorization": "Bearer t",
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        "X-Request-Id": "req-1",
        "X-Custom": "yes",
        "Accept-Language": "fr",
    }
    async with session.post(sim.base_url + "/chat/completions", json=STREAM, headers=headers):
        pass
    async with session.get(sim.base_url + "/models"):
        pass
    async with session.get(sim.url + "/_sim/log") as r:
        log = await r.json()
    assert [e["path"] for e in log] == ["/v1/chat/completions", "/v1/models"]
    first = log[0]
    assert first["seq"] == 1 and first["model"] == "sim-small" and first["stream"] is True
    assert first["fault"] == "ok" and first["status"] == 200 and first["outcome"] == "completed"
    assert first["client_disconnected"] is False and first["t_end"] >= first["t_start"]
    assert first["request_body"] == STREAM
    assert first["headers"]["authorization"] == "Bearer t"
    assert first["headers"]["x-request-id"] == "req-1" and first["headers"]["x-custom"] == "yes"
    assert "traceparent" in first["headers"] and "accept-language" not in first["headers"]
    async with session.get(sim.url + "/_sim/log", params={"since": "1"}) as r:
        assert [e["seq"] for e in await r.json()] == [2]
    async with session.delete(sim.url + "/_sim/log") as r:
        assert await r.json() == {"cleared": 2}
    assert sim.state.attempts() == []


def stored_body_bytes(sim: SimServer) -> int:
    """What the log's request bodies take, measured from the log itself."""
    return sum(len(orjson.dumps(a["request_body"])) for a in sim.state.attempts())


async def test_log_summarises_a_large_request_body(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (512 * 1024)}]}
    for _ in range(40):
        async with session.post(sim.base_url + "/chat/completions", json=big) as r:
            assert r.status == 200
    async with session.post(sim.base_url + "/chat/completions", json=CHAT) as r:
        assert r.status == 200
    log = sim.state.attempts()
    assert len(log) == 41 and log[-1]["request_body"] == CHAT  # small bodies stay verbatim
    summary = log[0]["request_body"]
    assert summary["truncated"] is True and summary["bytes"] > 512 * 1024
    assert summary["fields"] == {"model": "sim-small", "messages": "<list of 1>"}
    assert log[0]["model"] == "sim-small"
    # 20 MiB were sent; the log keeps a few hundred bytes per large body.
    assert stored_body_bytes(sim) < 20 * 1024
    assert sim.state.log_bytes() < 20 * 1024


async def test_log_keeps_a_bounded_number_of_body_bytes(session: aiohttp.ClientSession) -> None:
    limit = 256 * 1024
    state = SimState(settings=SimSettings(name="sim-a", n_words=N_WORDS), log_bytes_limit=limit)
    body = {**CHAT, "messages": [{"role": "user", "content": "y" * (60 * 1024)}]}
    async with SimServer(state=state) as sim:
        for _ in range(30):  # 1.8 MiB of bodies, each under the per-entry cap
            async with session.post(sim.base_url + "/chat/completions", json=body) as r:
                assert r.status == 200
        log = sim.state.attempts()
        assert 2 <= len(log) < 30 and log[-1]["seq"] == 30  # the oldest went first
        assert [a["seq"] for a in log] == list(range(31 - len(log), 31))
        assert log[-1]["request_body"] == body
        assert stored_body_bytes(sim) <= limit and 0 < sim.state.log_bytes() <= limit
        sim.state.clear_log()
        assert sim.state.log_bytes() == 0


# --- CLI -----------------------------------------------------------------------------------


def test_cli_arguments_parse() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(
        ["--port", "9001", "--name", "b", "--fault", "status:429:2", "--models", "x, y"]
    )
    assert args.port == 9001 and args.name == "b" and args.models == ["x", "y"]
    assert args.fault == Fault(mode="status", status=429, retry_after=2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault", "bogus"])


async def test_run_sim_serves_until_cancelled(
    capsys: pytest.CaptureFixture[str], session: aiohttp.ClientSession
) -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(["--name", "cli", "--fault", "status:503*1", "--words", "2"])
    task = asyncio.create_task(run_sim(args))
    out = ""

    def printed() -> bool:
        nonlocal out
        out += capsys.readouterr().out
        return "listening" in out or task.done()

    try:
        await until(printed, timeout_s=1.0)
        line = out.strip()
        assert re.fullmatch(r"turnout sim cli listening on http://127\.0\.0\.1:\d+/v1", line)
        url = line.rsplit(" ", 1)[1] + "/chat/completions"
        async with session.post(url, json=CHAT) as r:
            assert r.status == 503
        async with session.post(url, json=CHAT) as r:
            content = (await r.json())["choices"][0]["message"]["content"]
            assert content == answer_text("cli", "sim-small", PROMPT, 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
