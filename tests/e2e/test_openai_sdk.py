"""The official `openai` SDK, sync and async, talks to the gateway as it talks to OpenAI.

The gateway runs on the test's event loop, so the sync client runs in a worker thread
(`asyncio.to_thread`). Both clients use `max_retries=0`: every retry seen here is the
gateway's own.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest

from gateway.edge.server import Server
from gateway.sim.answers import answer_text
from gateway.sim.server import SimServer
from tests.builders import GatewayFactory, SimFactory, make_config

PROMPT = "tell me about switches"
N_WORDS = 8
ROUTES = {"chat": ["m1@a"], "text": ["t1@a"], "embed": ["e1@a"]}

Client = openai.OpenAI | openai.AsyncOpenAI


def expected(model: str, prompt: str = PROMPT, sim: str = "sim-a") -> str:
    return answer_text(sim, model, prompt, N_WORDS)


def new_client(kind: str, base_url: str) -> Client:
    if kind == "sync":
        return openai.OpenAI(base_url=base_url, api_key="client-key", max_retries=0, timeout=10)
    return openai.AsyncOpenAI(base_url=base_url, api_key="client-key", max_retries=0, timeout=10)


async def close_client(client: Client) -> None:
    if isinstance(client, openai.OpenAI):
        client.close()
    else:
        await client.close()


async def call(client: Client, fn: Callable[[], Any]) -> Any:
    """Run one SDK call: `fn` returns a result (sync client, run in a thread) or an awaitable."""
    if isinstance(client, openai.OpenAI):
        return await asyncio.to_thread(fn)
    return await fn()


async def collect(
    client: Client, open_stream: Callable[[], Any], pick: Callable[[Any], Any]
) -> list[Any]:
    """Open a stream with `open_stream` and return `pick(chunk)` for every chunk, in order."""
    if isinstance(client, openai.OpenAI):

        def run() -> list[Any]:
            with open_stream() as stream:
                return [pick(chunk) for chunk in stream]

        return await asyncio.to_thread(run)
    stream = open_stream()
    if inspect.isawaitable(stream):
        stream = await stream
    async with stream:
        return [pick(chunk) async for chunk in stream]


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimServer:
    return await sim_factory("sim-a", n_words=N_WORDS)


@pytest.fixture
async def gateway(sim: SimServer, gateway_factory: GatewayFactory) -> Server:
    return await gateway_factory(make_config({"a": sim.base_url}, ROUTES))


@pytest.fixture(params=["sync", "async"])
async def client(request: pytest.FixtureRequest, gateway: Server) -> AsyncIterator[Client]:
    c = new_client(request.param, gateway.url + "/v1")
    try:
        yield c
    finally:
        await close_client(c)


def chat_messages(prompt: str = PROMPT) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": prompt},
    ]


async def test_chat_non_streaming(client: Client, sim: SimServer) -> None:
    raw = await call(
        client,
        lambda: client.chat.completions.with_raw_response.create(
            model="chat", messages=chat_messages(), extra_headers={"X-Request-Id": "sdk-req-1"}
        ),
    )
    assert raw.status_code == 200
    assert raw.headers["x-turnout-target"] == "m1@a"
    assert raw.headers["x-turnout-attempts"] == "1"
    assert raw.headers["x-request-id"] == "sdk-req-1"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "m1"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == expected("m1")
    assert completion.choices[0].finish_reason == "stop"
    # prompt tokens: words of every message ("be brief" + the prompt)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2 + len(PROMPT.split())
    assert completion.usage.completion_tokens == len(expected("m1").split())
    log = sim.state.attempts()
    assert len(log) == 1
    assert log[0]["path"] == "/v1/chat/completions"
    assert log[0]["model"] == "m1"
    assert log[0]["stream"] is False
    assert log[0]["outcome"] == "completed"
    # The request id travels upstream; the client's key does not, the provider's does.
    assert log[0]["headers"]["x-request-id"] == "sdk-req-1"
    assert log[0]["headers"]["authorization"] == "Bearer key-a"


async def test_chat_streaming(client: Client, sim: SimServer) -> None:
    raw = await call(
        client,
        lambda: client.chat.completions.with_raw_response.create(
            model="chat", messages=chat_messages(), stream=True
        ),
    )
    assert raw.status_code == 200
    assert raw.headers["x-turnout-target"] == "m1@a"
    assert raw.headers["x-turnout-attempts"] == "1"
    assert re.fullmatch(r"[0-9a-f]{32}", raw.headers["x-request-id"])
    assert raw.headers["content-type"].startswith("text/event-stream")

    def pick(chunk: Any) -> tuple[str, str, str | None]:
        choice = chunk.choices[0]
        return chunk.model, choice.delta.content or "", choice.finish_reason

    chunks = await collect(client, raw.parse, pick)
    assert {model for model, _, _ in chunks} == {"m1"}
    assert "".join(text for _, text, _ in chunks) == expected("m1")
    assert [finish for _, _, finish in chunks if finish] == ["stop"]
    log = sim.state.attempts()
    assert [(a["stream"], a["outcome"]) for a in log] == [(True, "completed")]


async def test_chat_streaming_with_usage(client: Client) -> None:
    chunks = await collect(
        client,
        lambda: client.chat.completions.create(
            model="chat",
            messages=chat_messages(),
            stream=True,
            stream_options={"include_usage": True},
        ),
        lambda chunk: chunk,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected("m1")
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(expected("m1").split())


async def test_legacy_completions(client: Client, sim: SimServer) -> None:
    raw = await call(
        client,
        lambda: client.completions.with_raw_response.create(model="text", prompt=PROMPT),
    )
    assert raw.headers["x-turnout-target"] == "t1@a"
    assert raw.headers["x-turnout-attempts"] == "1"
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.model == "t1"
    assert completion.choices[0].text == expected("t1")
    assert completion.choices[0].finish_reason == "stop"

    pieces = await collect(
        client,
        lambda: client.completions.create(model="text", prompt=PROMPT, stream=True),
        lambda chunk: (chunk.model, chunk.choices[0].text),
    )
    assert {model for model, _ in pieces} == {"t1"}
    assert "".join(text for _, text in pieces) == expected("t1")
    log = sim.state.attempts()
    assert [(a["path"], a["stream"], a["outcome"]) for a in log] == [
        ("/v1/completions", False, "completed"),
        ("/v1/completions", True, "completed"),
    ]


# None: the SDK's default, which asks for base64 and decodes it to floats itself.
@pytest.mark.parametrize("encoding", [None, "float"])
async def test_embeddings_equal_the_sims(
    client: Client, sim: SimServer, encoding: str | None
) -> None:
    inputs = ["first text", "second text"]
    options: dict[str, Any] = {} if encoding is None else {"encoding_format": encoding}
    raw = await call(
        client,
        lambda: client.embeddings.with_raw_response.create(model="embed", input=inputs, **options),
    )
    assert raw.headers["x-turnout-target"] == "e1@a"
    assert raw.headers["x-turnout-attempts"] == "1"
    via_gateway = raw.parse()
    direct_client = new_client("async", sim.base_url)
    try:
        assert isinstance(direct_client, openai.AsyncOpenAI)
        direct = await direct_client.embeddings.create(model="e1", input=inputs, **options)
    finally:
        await close_client(direct_client)
    assert via_gateway.model == "e1"
    assert [d.index for d in via_gateway.data] == [0, 1]
    assert [d.embedding for d in via_gateway.data] == [d.embedding for d in direct.data]
    assert len(via_gateway.data[0].embedding) == 8
    assert all(isinstance(x, float) for d in via_gateway.data for x in d.embedding)
    assert via_gateway.usage.prompt_tokens == 4
    assert [a["path"] for a in sim.state.attempts()] == ["/v1/embeddings", "/v1/embeddings"]


async def test_models_list_is_the_route_aliases(client: Client, sim: SimServer) -> None:
    page = await call(client, lambda: client.models.list())
    assert [m.id for m in page.data] == list(ROUTES)
    assert {m.owned_by for m in page.data} == {"turnout"}
    assert sim.state.attempts() == []  # answered by the gateway itself


async def test_unknown_model_raises_not_found(client: Client, sim: SimServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await call(
            client, lambda: client.chat.completions.create(model="nope", messages=chat_messages())
        )
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "chat, text, embed" in info.value.message
    assert sim.state.attempts() == []


async def test_chat_stream_burst_is_relayed_whole(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    """Regression: events that arrived in the same socket read as the first token were
    dropped (a hole in the text). The sim writes every event back to back here."""
    fast = await sim_factory("sim-fast", n_words=40)
    gw = await gateway_factory(make_config({"a": fast.base_url}, {"chat": ["m1@a"]}))
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=10)
    try:
        for _ in range(3):
            stream = await client.chat.completions.create(
                model="chat", messages=chat_messages(), stream=True
            )
            async with stream:
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
            assert text == answer_text("sim-fast", "m1", PROMPT, 40)
    finally:
        await client.close()
