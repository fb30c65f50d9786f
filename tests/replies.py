"""A client's view of the gateway's answers in tests: send, read whole, check the shape."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.server import Server
from tests.sse import sse_events

CHAT = "/v1/chat/completions"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    started: float = 0.0  # monotonic, just before the request was sent
    elapsed: float = 0.0

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def target(self) -> str | None:
        return self.headers.get("x-turnout-target")

    @property
    def attempts(self) -> str | None:
        return self.headers.get("x-turnout-attempts")


async def post(
    http: aiohttp.ClientSession,
    gw: Server,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = CHAT,
) -> Reply:
    started = time.monotonic()
    async with http.post(gw.url + path, json=body, headers=headers or {}) as resp:
        data = await resp.read()
        return Reply(
            resp.status,
            {k.lower(): v for k, v in resp.headers.items()},
            data,
            started,
            time.monotonic() - started,
        )


def stream_text(body: bytes) -> str:
    """The text of a complete chat stream; asserts it is well formed and ends with [DONE]."""
    events = sse_events(body)
    assert events and events[-1] == (None, "[DONE]"), events[-1:]
    text = []
    for name, data in events[:-1]:
        assert name is None, (name, data)
        for choice in orjson.loads(data)["choices"]:
            text.append(choice["delta"].get("content") or "")
    return "".join(text)


def answer_of(reply: Reply, stream: bool) -> str:
    assert reply.status == 200, reply.body
    if stream:
        assert reply.headers["content-type"].startswith("text/event-stream")
        return stream_text(reply.body)
    return str(reply.json()["choices"][0]["message"]["content"])


async def admin_targets(http: aiohttp.ClientSession, gw: Server) -> dict[str, dict[str, Any]]:
    """`GET /admin/targets`, by target id."""
    async with http.get(gw.url + "/admin/targets") as resp:
        assert resp.status == 200
        data = await resp.json()
    return {t["id"]: t for t in data["data"]}
