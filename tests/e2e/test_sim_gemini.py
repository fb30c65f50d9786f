"""The simulated provider in Gemini's wire format, over a real socket with Google's own
``google-genai`` SDK as the client: generateContent and streamGenerateContent, the same answers
as the OpenAI sim, function calls, validation as strict as the real API's, the key, errors and
faults in Google's shapes (a 429's RetryInfo), prefill, the models list and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import openai
import orjson
import pytest
from google import genai
from google.genai import errors, types

from gateway.sim import Fault, SimServer, answer_text
from gateway.sim.cli import add_sim_arguments, run_sim
from tests.builders import SimFactory, set_fault
from tests.waiting import until

PROMPT = "hello there"
MODEL = "sim-small"
N_WORDS = 5
KEY = "gemini-test-key"
BODY: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
N_CHUNKS = N_WORDS + 2  # "[v]", the words, "."
SEARCH = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="search",
            description="Search the web",
            parameters_json_schema={"type": "object", "properties": {"query": {"type": "string"}}},
        )
    ]
)


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimServer:
    return await sim_factory("gem", format="gemini", voice="v", n_words=N_WORDS, api_key=KEY)


@contextlib.asynccontextmanager
async def google(sim: SimServer, key: str = KEY) -> AsyncIterator[genai.client.AsyncClient]:
    """Google's SDK on `sim`. Over httpx, not aiohttp: the SDK's aiohttp session subclasses
    ClientSession, which aiohttp warns about (and warnings are errors here)."""
    async with httpx.AsyncClient() as transport:
        options = types.HttpOptions(base_url=sim.url, httpx_async_client=transport)
        client = genai.Client(api_key=key, http_options=options).aio
        try:
            yield client
        finally:
            await client.aclose()


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[genai.client.AsyncClient]:
    async with google(sim) as c:
        yield c


def expected(prompt: str = PROMPT) -> str:
    return answer_text("v", MODEL, prompt, N_WORDS)


async def raw_stream(
    http: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any] = BODY
) -> tuple[int, bytes]:
    """POST a streamed request; the status and every byte received (up to a cut)."""
    got = b""
    url = f"{sim.base_url}/models/{MODEL}:streamGenerateContent?alt=sse"
    async with http.post(url, json=body, headers={"x-goog-api-key": KEY}) as r:
        try:
            async for piece in r.content.iter_any():
                got += piece
        except aiohttp.ClientPayloadError:
            pass
        return r.status, got


def chunks(raw: bytes) -> list[Any]:
    """The JSON of every event that parses (a malformed one is left out)."""
    out = []
    for event in raw.split(b"\r\n\r\n"):
        if event.startswith(b"data: "):
            try:
                out.append(orjson.loads(event[6:]))
            except orjson.JSONDecodeError:
                continue
    return out


# --- answers ---------------------------------------------------------------------------------


async def test_an_answer_has_the_openai_sims_text_and_geminis_shape(
    sim: SimServer, sim_factory: SimFactory, client: genai.client.AsyncClient
) -> None:
    oai = await sim_factory("oai", voice="v", n_words=N_WORDS)
    async with openai.AsyncOpenAI(base_url=oai.base_url, api_key="x", max_retries=0) as o:
        chat = await o.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}]
        )
    config = types.GenerateContentConfig(system_instruction="be brief", temperature=0.2)
    answer = await client.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    assert answer.text == chat.choices[0].message.content == expected()
    [candidate] = answer.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP and candidate.index == 0
    assert answer.model_version == MODEL and answer.response_id
    usage = answer.usage_metadata
    assert usage is not None and usage.prompt_token_count == 4  # system + prompt words
    assert usage.candidates_token_count == N_WORDS + 1 and usage.total_token_count == N_WORDS + 5
    [seen] = sim.state.attempts()
    assert seen["model"] == MODEL and seen["stream"] is False
    assert seen["path"] == f"/v1/models/{MODEL}:generateContent"  # the SDK's default version


async def test_a_stream_carries_the_same_text_one_chunk_per_word(
    sim: SimServer, client: genai.client.AsyncClient, http: aiohttp.ClientSession
) -> None:
    pieces = [
        c.text
        async for c in await client.models.generate_content_stream(model=MODEL, contents=PROMPT)
    ]
    assert "".join(p or "" for p in pieces) == expected() and len(pieces) == N_CHUNKS
    seen = sim.state.attempts()[-1]
    assert seen["stream"] is True and seen["query"] == "alt=sse"
    status, raw = await raw_stream(http, sim)
    assert status == 200 and raw.count(b"\r\n\r\n") == N_CHUNKS  # CRLF-framed, no terminator
    got = chunks(raw)
    assert len(got) == N_CHUNKS and b"[DONE]" not in raw
    assert [c["candidates"][0].get("finishReason") for c in got] == [None] * (N_CHUNKS - 1) + [
        "STOP"
    ]
    assert got[-1]["usageMetadata"]["candidatesTokenCount"] == N_WORDS + 1
    assert len({c["responseId"] for c in got}) == 1


async def test_a_stream_without_alt_sse_is_a_json_array(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/models/{MODEL}:streamGenerateContent"
    async with http.post(url, json=BODY, headers={"x-goog-api-key": KEY}) as r:
        got = await r.json()
    assert isinstance(got, list) and len(got) == N_CHUNKS
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in got) == expected()


# --- function calls --------------------------------------------------------------------------


async def test_tools_call_answers_with_a_function_call_and_its_result_with_text(
    sim_factory: SimFactory,
) -> None:
    sim = await sim_factory("t", format="gemini", voice="v", n_words=N_WORDS, tools="call")
    config = types.GenerateContentConfig(tools=[SEARCH])
    async with google(sim, "any") as c:
        answer = await c.models.generate_content(model=MODEL, contents=PROMPT, config=config)
        [call] = answer.function_calls or []
        assert (call.name, call.args, call.id) == ("search", {"query": PROMPT}, None)
        streamed = [
            ch
            async for ch in await c.models.generate_content_stream(
                model=MODEL, contents=PROMPT, config=config
            )
        ]
        assert [fc.name for ch in streamed for fc in ch.function_calls or ()] == ["search"]
        turns = [
            types.Content(role="user", parts=[types.Part(text=PROMPT)]),
            types.Content(role="model", parts=[types.Part(function_call=call)]),
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(name="search", response={"output": "lines"})
                ],
            ),
        ]
        final = await c.models.generate_content(model=MODEL, contents=turns, config=config)
        assert final.text == answer_text("v", MODEL, "lines", N_WORDS)
        none = types.GenerateContentConfig(
            tools=[SEARCH],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode=types.FunctionCallingConfigMode.NONE
                )
            ),
        )
        text = await c.models.generate_content(model=MODEL, contents=PROMPT, config=none)
        assert text.text == expected() and not text.function_calls


# --- the key, validation, errors -------------------------------------------------------------


async def test_the_key_is_checked_as_google_checks_it(
    sim: SimServer, client: genai.client.AsyncClient, http: aiohttp.ClientSession
) -> None:
    await client.models.generate_content(model=MODEL, contents=PROMPT)
    headers = {k.lower(): v for k, v in sim.state.attempts()[-1]["headers"].items()}
    assert headers["x-goog-api-key"] == KEY
    async with google(sim, "wrong") as wrong:
        with pytest.raises(errors.ClientError) as caught:
            await wrong.models.generate_content(model=MODEL, contents=PROMPT)
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")  # not a 401
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    url = f"{sim.base_url}/models/{MODEL}:generateContent"
    async with http.post(url, json=BODY) as r:
        assert r.status == 403 and (await r.json())["error"]["status"] == "PERMISSION_DENIED"
    async with http.post(url + f"?key={KEY}", json=BODY) as r:  # the API takes it in the URL
        assert r.status == 200


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({**BODY, "model": MODEL}, 'Unknown name "model"'),
        ({**BODY, "stream": True}, 'Unknown name "stream"'),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"parts": [{"text": "x", "inlineData": {}}]}]}, "oneof field 'data'"),
        ({"contents": [{"parts": [{"content": "x"}]}]}, 'Unknown name "content"'),
        ({**BODY, "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
        ({"contents": [{"parts": [{"functionCall": {"args": {}}}]}]}, "Name cannot be empty"),
    ],
)
async def test_invalid_requests_are_rejected_like_the_real_api(
    sim: SimServer, http: aiohttp.ClientSession, body: dict[str, Any], said: str
) -> None:
    url = f"{sim.base_url}/models/{MODEL}:generateContent"
    async with http.post(url, json=body, headers={"x-goog-api-key": KEY}) as r:
        err = (await r.json())["error"]
    assert r.status == 400 and err["status"] == "INVALID_ARGUMENT" and said in err["message"]


async def test_documented_parameters_are_accepted(client: genai.client.AsyncClient) -> None:
    config = types.GenerateContentConfig(
        system_instruction="be brief",
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=100,
        stop_sequences=["\n\n"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        response_mime_type="application/json",
        response_json_schema={"type": "object"},
        tools=[SEARCH],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["search"]
            )
        ),
    )
    answer = await client.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    assert answer.text == expected()


async def test_a_throttle_says_when_to_retry_in_the_body(
    sim: SimServer, client: genai.client.AsyncClient, http: aiohttp.ClientSession
) -> None:
    set_fault(sim, {"mode": "status", "status": 429, "retry_after": 37})
    with pytest.raises(errors.ClientError) as caught:
        await client.models.generate_content(model=MODEL, contents=PROMPT)
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    url = f"{sim.base_url}/models/{MODEL}:generateContent"
    async with http.post(url, json=BODY, headers={"x-goog-api-key": KEY}) as r:
        assert r.status == 429 and "Retry-After" not in r.headers  # Gemini sends none
        [info] = (await r.json())["error"]["details"]
    assert info == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
    set_fault(sim, {"mode": "status", "status": 503, "message": "The model is overloaded."})
    with pytest.raises(errors.ServerError) as server:
        await client.models.generate_content(model=MODEL, contents=PROMPT)
    assert (
        server.value.status == "UNAVAILABLE" and server.value.message == "The model is overloaded."
    )


async def test_an_in_band_error_raises_in_the_sdk_mid_stream(
    sim: SimServer, client: genai.client.AsyncClient, http: aiohttp.ClientSession
) -> None:
    set_fault(sim, {"mode": "error_event", "after_chunks": 2})
    seen: list[str] = []
    with pytest.raises(errors.ServerError) as caught:
        async for chunk in await client.models.generate_content_stream(
            model=MODEL, contents=PROMPT
        ):
            seen.append(chunk.text or "")
    assert (
        caught.value.status == "UNAVAILABLE" and "".join(seen) == expected()[: len("".join(seen))]
    )
    assert len(seen) == 2
    set_fault(sim, {"mode": "error_event", "after_chunks": 1, "message": "busy"})
    _, raw = await raw_stream(http, sim)
    assert raw.endswith(
        b'data: {"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}\r\n\r\n'
    )
    assert sim.state.attempts()[-1]["outcome"] == "error_event"


@pytest.mark.parametrize(
    ("fault", "ending"),
    [
        ({"mode": "malformed", "after_chunks": 3}, "malformed"),
        ({"mode": "garbled", "after_chunks": 3, "times": 2}, "garbled"),
        ({"mode": "cut", "after_chunks": 3}, "cut"),
        ({"mode": "no_done"}, "no_done"),
    ],
)
async def test_stream_faults_are_gemini_framed(
    sim: SimServer, http: aiohttp.ClientSession, fault: dict[str, Any], ending: str
) -> None:
    set_fault(sim, fault)
    _, raw = await raw_stream(http, sim)
    bad = b'data: {"candidates": [\r\n\r\n'
    got = chunks(raw)
    finishes = [c["candidates"][0].get("finishReason") for c in got]
    if ending in ("malformed", "cut"):
        assert len(got) == 3 and "STOP" not in finishes
        assert raw.endswith(bad) == (ending == "malformed")
    elif ending == "garbled":
        assert raw.count(bad * 2) == 1 and len(got) == N_CHUNKS and finishes[-1] == "STOP"
    else:  # nothing to leave out: a Gemini stream has no terminator
        assert len(got) == N_CHUNKS and finishes[-1] == "STOP"
    assert sim.state.attempts()[-1]["outcome"] == ending


async def test_a_malformed_answer_is_not_json(sim: SimServer, http: aiohttp.ClientSession) -> None:
    set_fault(sim, {"mode": "malformed"})
    url = f"{sim.base_url}/models/{MODEL}:generateContent"
    async with http.post(url, json=BODY, headers={"x-goog-api-key": KEY}) as r:
        assert r.status == 200 and await r.read() == b'{"candidates": ['


async def test_only_the_formats_endpoints_are_served(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    for path in ("/v1/chat/completions", "/v1/messages", "/v1beta/nothing"):
        async with http.post(sim.url + path, json=BODY) as r:
            assert r.status == 404
            assert (await r.json())["error"]["status"] == "NOT_FOUND"


async def test_the_models_list_has_geminis_shape(client: genai.client.AsyncClient) -> None:
    names = [m.name async for m in await client.models.list()]
    assert names == ["models/sim-small", "models/sim-large"]


async def test_prefill_continue_finishes_the_answer(sim_factory: SimFactory) -> None:
    sim = await sim_factory("p", format="gemini", voice="v", n_words=N_WORDS, prefill="continue")
    full = expected()
    head = full[: full.index(" ", 5)]
    turns = [
        types.Content(role="user", parts=[types.Part(text=PROMPT)]),
        types.Content(role="model", parts=[types.Part(text=head)]),
    ]
    async with google(sim, "x") as c:
        answer = await c.models.generate_content(model=MODEL, contents=turns)
    assert head + (answer.text or "") == full


# --- CLI -------------------------------------------------------------------------------------


async def test_run_sim_serves_the_gemini_format(
    capsys: pytest.CaptureFixture[str], http: aiohttp.ClientSession
) -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(["--name", "cli", "--format", "gemini", "--words", "2"])
    assert Fault.parse_spec("error_event:2") == Fault(mode="error_event", after_chunks=2)
    task = asyncio.create_task(run_sim(args))
    out = ""

    def printed() -> bool:
        nonlocal out
        out += capsys.readouterr().out
        return "listening" in out or task.done()

    try:
        await until(printed, timeout_s=1.0)
        line = out.strip()
        assert re.fullmatch(r"turnout sim cli \(gemini\) listening on http://\S+/v1beta", line)
        url = line.rsplit(" ", 1)[1] + f"/models/{MODEL}:generateContent"
        async with http.post(url, json=BODY) as r:
            text = (await r.json())["candidates"][0]["content"]["parts"][0]["text"]
            assert text == answer_text("cli", MODEL, PROMPT, 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
