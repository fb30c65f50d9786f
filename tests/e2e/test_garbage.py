"""What a request leaves for the cyclic collector. `turnout serve` collects the young
generation only every 10,000 net allocations (`gateway.runtime.heap`), on the premise that a
request's objects are freed by reference counting when it ends: a reference cycle per request
(an object holding itself, a closure kept on its own owner) would pile up until a collection
and make every collection walk all of it (seen: `Exchange.gates = self`, CPU per request
+25 % under wrk). Real gateway, real sim, real client; the collector off while requests run."""

from __future__ import annotations

import asyncio
import gc

import aiohttp
import orjson
from aiohttp import web

from tests.builders import CHAT, GatewayFactory, SimFactory, chat, make_config, upstream_app

REQUESTS = 60


async def _cyclic_garbage_per_request(
    http: aiohttp.ClientSession, url: str, body: dict[str, object]
) -> float:
    for _ in range(5):  # warm: pools, caches, lazily built state
        async with http.post(url, json=body) as resp:
            await resp.read()
    gc.collect()
    gc.disable()
    try:
        for _ in range(REQUESTS):
            async with http.post(url, json=body) as resp:
                assert resp.status == 200
                await resp.read()
        found = gc.collect()
    finally:
        gc.enable()
    return found / REQUESTS


async def test_a_request_leaves_almost_no_cyclic_garbage(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("sim-a")
    gw = await gateway_factory(make_config({"a": sim.base_url}, {"chat": ["m1@a"]}))
    for stream in (False, True):
        per_request = await _cyclic_garbage_per_request(
            http, gw.url + CHAT, chat("hello", stream=stream)
        )
        # The client, the sim and the gateway share this process: all three are counted.
        assert per_request < 5, (stream, per_request)


async def test_an_answered_stream_gives_its_upstream_connection_back_to_the_pool(
    gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The provider's connection outlives each answered stream, even when the body's closing
    chunk comes a little after the last event (it was closed, unread: ~half of all streams
    paid a new connect, and a TLS handshake to a real provider; its transport was cyclic
    garbage)."""
    peers: list[object] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m1",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        }
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n")
        await asyncio.sleep(0.02)  # the closing chunk in a later segment than the last event
        await resp.write_eof()
        return resp

    async with upstream_app(handler) as url:
        gw = await gateway_factory(make_config({"a": url}, {"chat": ["m1@a"]}))
        for _ in range(6):
            async with http.post(gw.url + CHAT, json=chat("hello", stream=True)) as resp:
                assert resp.status == 200
                assert (await resp.read()).endswith(b"data: [DONE]\n\n")
    assert len(peers) == 6 and len(set(peers)) == 1, peers
