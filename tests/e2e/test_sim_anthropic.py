"""The simulated provider in Anthropic's wire format, over a real socket with the official
``anthropic`` SDK as the client: the Messages API (non-streamed and streamed), the same answers
as the OpenAI sim, validation, auth, errors and faults in Anthropic's shapes, prefill, the
models list and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import orjson
import pytest

from gateway.sim import Fault, SimServer, answer_text
from gateway.sim.cli import add_sim_arguments, run_sim
from tests.builders import SimFactory, set_fault
from tests.waiting import until

PROMPT = "hello there"
MODEL = "sim-small"
N_WORDS = 5
KEY = "sk-ant-test"
USER: list[Any] = [{"role": "user", "content": PROMPT}]
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": USER}
# A text stream: message_start, content_block_start, ping, "[v]" + N_WORDS words + ".",
# content_block_stop, message_delta (then message_stop, the terminator).
N_EVENTS = N_WORDS + 7


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimServer:
    return await sim_factory("ant", format="anthropic", voice="v", n_words=N_WORDS, api_key=KEY)


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key=KEY, max_retries=0) as c:
        yield c


def expected(prompt: str = PROMPT) -> str:
    return answer_text("v", MODEL, prompt, N_WORDS)


async def raw_stream(http: aiohttp.ClientSession, sim: SimServer) -> tuple[int, bytes]:
    """POST a streamed request; the status and every byte received (up to a cut)."""
    got = b""
    async with http.post(
        sim.url + "/v1/messages", json={**BODY, "stream": True}, headers={"x-api-key": KEY}
    ) as r:
        try:
            async for piece in r.content.iter_any():
                got += piece
        except aiohttp.ClientPayloadError:
            pass
        return r.status, got


def event_names(raw: bytes) -> list[str]:
    return re.findall(r"^event: (\S+)$", raw.decode(), flags=re.MULTILINE)


# --- answers ---------------------------------------------------------------------------------


async def test_a_message_has_the_openai_sims_answer_and_anthropics_shape(
    sim: SimServer, sim_factory: SimFactory, client: anthropic.AsyncAnthropic
) -> None:
    oai = await sim_factory("oai", voice="v", n_words=N_WORDS)
    async with openai.AsyncOpenAI(base_url=oai.base_url, api_key="x", max_retries=0) as o:
        chat = await o.chat.completions.create(model=MODEL, messages=USER)
    message = await client.messages.create(
        model=MODEL, max_tokens=64, system="be brief", messages=USER
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == chat.choices[0].message.content == expected()
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert message.model == MODEL and message.type == "message"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (4, N_WORDS + 1)  # system + prompt words
    assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0


async def test_a_stream_carries_the_same_text_word_by_word(
    sim: SimServer, client: anthropic.AsyncAnthropic
) -> None:
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
        deltas = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(deltas) == expected() and len(deltas) == N_WORDS + 2
    assert final.content[0].type == "text" and final.content[0].text == expected()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == N_WORDS + 1
    assert final.usage.input_tokens == 2
    raw = await client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True)
    types = [event.type async for event in raw]
    assert types[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert sim.state.attempts()[-1]["stream"] is True


async def test_the_stream_is_framed_with_event_names_and_ends_at_message_stop(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    status, raw = await raw_stream(http, sim)
    assert status == 200
    names = event_names(raw)
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * (N_WORDS + 2),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert b"[DONE]" not in raw
    frames = [f for f in raw.split(b"\n\n") if f]
    for name, frame in zip(names, frames, strict=True):
        event_line, data_line = frame.split(b"\n")
        assert event_line == b"event: " + name.encode()
        assert orjson.loads(data_line.removeprefix(b"data: "))["type"] == name
    start = orjson.loads(frames[0].split(b"data: ")[1])["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1 and start["usage"]["input_tokens"] == 2


# --- requests: validation, auth, headers -----------------------------------------------------


async def test_the_request_headers_are_logged_and_the_key_is_checked(
    sim: SimServer, client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    headers = sim.state.attempts()[-1]["headers"]
    assert headers["anthropic-version"]
    assert headers["authorization"] == f"Bearer {KEY}"  # how the anthropic 2.x SDK sends it
    async with anthropic.AsyncAnthropic(
        base_url=sim.url, api_key=None, auth_token=None, default_headers={"x-api-key": KEY}
    ) as by_header:
        await by_header.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert sim.state.attempts()[-1]["headers"]["x-api-key"] == KEY
    for headers in ({"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}, {}):
        async with http.post(sim.url + "/v1/messages", json=BODY, headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"]["type"] == "authentication_error"
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError):
            await bad.messages.create(model=MODEL, max_tokens=8, messages=USER)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"model": None}, "model: Field required"),
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"max_tokens": "8"}, "max_tokens: Input should be a valid integer"),
        ({"messages": []}, "messages: at least one message is required"),
        ({"messages": "hi"}, "messages: Input should be a valid list"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0"),
        ({"system": 3}, "system: Input should be"),
        ({"system": [{"type": "image"}]}, "system.0.type"),
    ],
)
async def test_invalid_requests_are_rejected_like_the_real_api(
    sim: SimServer, client: anthropic.AsyncAnthropic, change: dict[str, Any], problem: str
) -> None:
    body = {**BODY, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.post("/v1/messages", cast_to=httpx2.Response, body=body)
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(problem)


async def test_documented_parameters_are_accepted_and_ignored(
    client: anthropic.AsyncAnthropic,
) -> None:
    message = await client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        system=[{"type": "text", "text": "be brief"}],
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 5},  # not in the 2.x SDK
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
        tools=[{"name": "search", "input_schema": {"type": "object"}}],
        tool_choice={"type": "auto"},
    )
    assert message.content[0].type == "text" and message.content[0].text == expected()


# --- errors and faults -----------------------------------------------------------------------


async def test_an_overloaded_status_fault_is_a_529_in_anthropics_shape(
    sim: SimServer, client: anthropic.AsyncAnthropic
) -> None:
    set_fault(sim, {"mode": "status", "status": 529, "retry_after": 3, "count": 1})
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert isinstance(caught.value, anthropic.OverloadedError)
    assert caught.value.status_code == 529
    assert caught.value.response.headers["retry-after"] == "3"
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    set_fault(sim, {"mode": "status", "status": 429, "count": 1})
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert isinstance(limited.value.body, dict)
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    message = await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert message.content[0].type == "text" and message.content[0].text == expected()


async def test_a_cut_stream_raises_in_the_sdk(
    sim: SimServer, client: anthropic.AsyncAnthropic
) -> None:
    set_fault(sim, {"mode": "cut", "after_chunks": 4})
    with pytest.raises((anthropic.APIError, httpx2.HTTPError)):
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
            await stream.get_final_message()
    assert sim.state.attempts()[-1]["outcome"] == "cut"


async def test_an_in_band_error_event_raises_in_the_sdk(
    sim: SimServer, client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    set_fault(sim, {"mode": "error_event", "after_chunks": 4})
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
            async for text in stream.text_stream:
                seen.append(text)
    assert "".join(seen) == "[v]"  # the 4th event was the first delta
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    status, raw = await raw_stream(http, sim)
    assert status == 200 and event_names(raw)[-1] == "error"
    assert raw.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    assert sim.state.attempts()[-1]["outcome"] == "error_event"


@pytest.mark.parametrize(
    ("fault", "ending"),
    [
        ({"mode": "malformed", "after_chunks": 3}, "malformed"),
        ({"mode": "no_done"}, "no_done"),
        ({"mode": "garbled", "after_chunks": 3, "times": 2}, "garbled"),
    ],
)
async def test_stream_faults_are_anthropic_framed(
    sim: SimServer, http: aiohttp.ClientSession, fault: dict[str, Any], ending: str
) -> None:
    set_fault(sim, fault)
    _, raw = await raw_stream(http, sim)
    bad = b'event: content_block_delta\ndata: {"type": "content_block_delta",\n\n'
    names = event_names(raw)
    if ending == "malformed":
        assert names == ["message_start", "content_block_start", "ping", "content_block_delta"]
        assert raw.endswith(bad) and raw.count(bad) == 1
    elif ending == "no_done":
        assert names[-1] == "message_delta" and len(names) == N_EVENTS
    else:
        assert raw.count(bad * 2) == 1 and names[-1] == "message_stop"
        assert raw.index(bad) == len(b"".join(raw.split(b"\n\n")[i] + b"\n\n" for i in range(3)))
    assert b"[DONE]" not in raw
    assert sim.state.attempts()[-1]["outcome"] == ending


async def test_a_malformed_message_is_not_json(sim: SimServer, http: aiohttp.ClientSession) -> None:
    set_fault(sim, {"mode": "malformed"})
    async with http.post(sim.url + "/v1/messages", json=BODY, headers={"x-api-key": KEY}) as r:
        assert r.status == 200 and await r.read() == b'{"type": "message", "content": ['


async def test_only_the_formats_endpoints_are_served(
    sim: SimServer, sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/nothing"):
        async with http.post(sim.url + path, json=BODY) as r:
            assert r.status == 404
            error = await r.json()
            assert error["type"] == "error" and error["error"]["type"] == "not_found_error"
    oai = await sim_factory("oai")
    async with http.post(oai.url + "/v1/messages", json=BODY) as r:
        assert r.status == 404 and "message" in (await r.json())["error"]


async def test_the_models_list_has_anthropics_shape(
    sim: SimServer, client: anthropic.AsyncAnthropic
) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == ["sim-small", "sim-large"]
    assert all(m.type == "model" and m.display_name == m.id for m in page.data)
    assert page.first_id == "sim-small" and page.last_id == "sim-large"
    assert page.has_more is False


# --- prefill ---------------------------------------------------------------------------------


async def test_prefill_continue_finishes_the_answer(sim_factory: SimFactory) -> None:
    sim = await sim_factory("p", format="anthropic", voice="v", n_words=N_WORDS, prefill="continue")
    full = expected()
    head = full[: full.index(" ", 5)]  # "[v] <first word>"
    messages: list[Any] = [*USER, {"role": "assistant", "content": head}]
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0) as client:
        message = await client.messages.create(model=MODEL, max_tokens=64, messages=messages)
        assert message.content[0].type == "text" and head + message.content[0].text == full
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=messages) as stream:
            assert head + await stream.get_final_text() == full
        with pytest.raises(anthropic.BadRequestError, match="trailing whitespace"):
            await client.messages.create(
                model=MODEL, max_tokens=64, messages=[*USER, {"role": "assistant", "content": "a "}]
            )
    rejecting = await sim_factory("r", format="anthropic", prefill="reject")
    async with anthropic.AsyncAnthropic(base_url=rejecting.url, api_key="x") as client:
        with pytest.raises(anthropic.BadRequestError, match="prefill"):
            await client.messages.create(model=MODEL, max_tokens=64, messages=messages)


# --- CLI -------------------------------------------------------------------------------------


def test_cli_format_and_tools_parse() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(["--format", "anthropic", "--tools", "call"])
    assert args.format == "anthropic" and args.tools == "call"
    defaults = parser.parse_args([])
    assert defaults.format == "openai" and defaults.tools == "ignore"
    for bad in (["--format", "cohere"], ["--tools", "maybe"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert Fault.parse_spec("error_event:2") == Fault(mode="error_event", after_chunks=2)


async def test_run_sim_serves_the_anthropic_format(
    capsys: pytest.CaptureFixture[str], http: aiohttp.ClientSession
) -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(["--name", "cli", "--format", "anthropic", "--words", "2"])
    task = asyncio.create_task(run_sim(args))
    out = ""

    def printed() -> bool:
        nonlocal out
        out += capsys.readouterr().out
        return "listening" in out or task.done()

    try:
        await until(printed, timeout_s=1.0)
        line = out.strip()
        assert re.fullmatch(r"turnout sim cli \(anthropic\) listening on http://\S+/v1", line)
        async with http.post(line.rsplit(" ", 1)[1] + "/messages", json=BODY) as r:
            text = (await r.json())["content"][0]["text"]
            assert text == answer_text("cli", MODEL, PROMPT, 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- the in-band error in the OpenAI format --------------------------------------------------


async def test_an_error_event_in_an_openai_stream(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    oai = await sim_factory("oai", voice="v", n_words=N_WORDS)
    set_fault(oai, {"mode": "error_event", "after_chunks": 2, "message": "busy"})
    async with openai.AsyncOpenAI(base_url=oai.base_url, api_key="x", max_retries=0) as client:
        seen: list[str] = []
        with pytest.raises(openai.APIError, match="busy"):
            stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "[v]"
    async with http.post(oai.base_url + "/chat/completions", json={**BODY, "stream": True}) as r:
        raw = await r.read()
    error = b'data: {"error":{"message":"busy","type":"server_error","param":null,"code":null}}'
    assert raw.endswith(error + b"\n\n") and raw.count(b"data: ") == 3
    assert b"[DONE]" not in raw and oai.state.attempts()[-1]["outcome"] == "error_event"
