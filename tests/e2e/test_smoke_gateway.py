"""The gateway relays a chat completion from a sim and names the target that served it."""

from __future__ import annotations

import aiohttp

from gateway.sim.answers import answer_text
from tests.builders import CHAT, GatewayFactory, SimFactory, chat, make_config


async def test_chat_through_gateway(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("sim-a")
    gw = await gateway_factory(make_config({"a": sim.base_url}, {"chat": ["m1@a"]}))
    async with http.post(gw.url + CHAT, json=chat()) as resp:
        assert resp.status == 200
        assert resp.headers["x-turnout-target"] == "m1@a"
        assert resp.headers["x-turnout-attempts"] == "1"
        data = await resp.json()
    assert data["model"] == "m1"
    assert data["choices"][0]["message"]["content"] == answer_text("sim-a", "m1", "hi", 12)
    log = sim.state.attempts()
    assert len(log) == 1
    assert log[0]["headers"]["authorization"] == "Bearer key-a"


async def test_a_provider_may_need_query_parameters_and_its_own_key_header(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Azure OpenAI style: the key in an `api-key` header, the API version as a query."""
    from gateway.config import load_data

    sim = await sim_factory("sim-a")
    cfg = load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0, "config_poll_s": 0},
            "providers": {
                "az": {
                    "base_url": sim.base_url,
                    "headers": {"api-key": "az-key"},
                    "query": {"api-version": "2024-10-21"},
                }
            },
            "routes": [{"alias": "chat", "candidates": ["m1@az"]}],
        },
        env={},
    )
    gw = await gateway_factory(cfg)
    async with http.post(gw.url + CHAT, json=chat(stream=True)) as resp:
        assert resp.status == 200
        assert (await resp.read()).rstrip().endswith(b"[DONE]")
    (attempt,) = sim.state.attempts()
    assert attempt["path"] == "/v1/chat/completions"
    assert attempt["query"] == "api-version=2024-10-21"
    assert attempt["headers"]["api-key"] == "az-key"
    assert "authorization" not in attempt["headers"]  # no api_key: no Bearer header
