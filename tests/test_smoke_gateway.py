"""The gateway relays a chat completion from a sim and names the target that served it."""

from __future__ import annotations

import aiohttp

from gateway.sim.answers import answer_text
from tests.conftest import GatewayFactory, SimFactory, make_config


async def test_chat_through_gateway(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("sim-a")
    gw = await gateway_factory(make_config({"a": sim.base_url}, {"chat": ["m1@a"]}))
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(gw.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["x-switchyard-target"] == "m1@a"
        assert resp.headers["x-switchyard-attempts"] == "1"
        data = await resp.json()
    assert data["model"] == "m1"
    assert data["choices"][0]["message"]["content"] == answer_text("sim-a", "m1", "hi", 12)
    log = sim.state.attempts()
    assert len(log) == 1
    assert log[0]["headers"]["authorization"] == "Bearer key-a"
