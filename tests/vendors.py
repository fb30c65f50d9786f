"""What the cross-vendor end-to-end tests share (`test_translation_anthropic.py`,
`test_translation_gemini.py`): a foreign-format sim behind an OpenAI-format one on one route,
the official `openai` SDK as the client, and the text it reads back. The sims share a voice,
so every vendor answers a prompt with the same deterministic text."""

from __future__ import annotations

from typing import Any

import openai

from gateway.edge.server import Server
from gateway.sim import SimServer
from tests.builders import GatewayFactory, SimFactory, build_config

PROMPT = "what crosses the border"
N_WORDS = 16
VOICE = "model-x"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
# The faults an OpenAI-format primary shows before its first byte, each one failed over.
PRE_FIRST_BYTE = [
    {"mode": "status", "status": 503},
    {"mode": "status", "status": 429},
    {"mode": "reset"},
    {"mode": "malformed"},
    {"mode": "cut", "after_chunks": 0},
]


async def foreign_behind_openai(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    *,
    fmt: str,
    name: str,
    target: str,
    model: str,
    primary: str | None = None,
    route: dict[str, Any] | None = None,
    **sim_kwargs: Any,
) -> tuple[SimServer, SimServer | None, Server]:
    """A `fmt`-format sim `name` (target `target@name`, the provider's model `model`), behind
    an OpenAI-format sim `o` (target `target@o`) when `primary` is "openai"; route `chat`."""
    kwargs = {"n_words": N_WORDS, "voice": VOICE, "api_key": f"key-{name}", **sim_kwargs}
    foreign = await sim_factory(name, format=fmt, **kwargs)
    sims: dict[str, SimServer] = {name: foreign}
    targets: dict[str, Any] = {f"{target}@{name}": {"provider": name, "model": model}}
    candidates = [f"{target}@{name}"]
    o = None
    if primary == "openai":
        o = await sim_factory("o", n_words=N_WORDS, voice=VOICE, chunk_interval_ms=5)
        sims["o"] = o
        targets[f"{target}@o"] = {"provider": "o", "model": model}
        candidates.insert(0, f"{target}@o")
    routes = [{"alias": "chat", "candidates": candidates, **(route or {})}]
    gw = await gateway_factory(build_config(sims, routes, targets=targets))
    return foreign, o, gw


def sdk(gw: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="client-key", max_retries=0)


async def answer(client: openai.AsyncOpenAI, *, stream: bool, prompt: str = PROMPT) -> str:
    """The text of route `chat`'s answer to `prompt`, streamed (chunks joined) or not."""
    messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="chat", messages=messages, stream=True
            )
        ]
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    done = await client.chat.completions.create(model="chat", messages=messages)
    return done.choices[0].message.content or ""
