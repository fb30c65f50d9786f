"""Policies through a running gateway: capability filters, a third-party plugin loaded by
`module:Class`, cost/quality routing, and client feedback. Real sims and sockets."""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.config import load_data
from gateway.sim.server import SimServer
from tests.builders import CHAT, GatewayFactory, SimFactory, chat


def config(sims: dict[str, SimServer], targets: dict[str, Any], routes: list[Any]) -> Any:
    return load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0, "config_poll_s": 0},
            "providers": {n: {"base_url": s.base_url} for n, s in sims.items()},
            "targets": targets,
            "routes": routes,
        },
        env={},
    )


async def post(http: aiohttp.ClientSession, url: str, body: Any, **kw: Any) -> tuple[int, Any, Any]:
    async with http.post(url + CHAT, json=body, **kw) as r:
        return r.status, r.headers, await r.json()


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


async def test_a_request_with_tools_never_goes_to_a_target_without_tool_support(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    plain, tooled = await sim_factory("plain"), await sim_factory("tooled")
    cfg = config(
        {"p": plain, "t": tooled},
        {
            "plain": {"provider": "p", "model": "m", "context_window": 8192},
            "tooled": {
                "provider": "t",
                "model": "m",
                "context_window": 8192,
                "supports": ["tools"],
            },
        },
        [
            {
                "alias": "r",
                "candidates": ["plain", "tooled"],
                "policy": {"filters": ["capability"], "tie_break": "priority"},
            }
        ],
    )
    gw = await gateway_factory(cfg)
    status, headers, _ = await post(http, gw.url, chat("hello", model="r"))
    assert status == 200 and headers["x-turnout-target"] == "plain"  # first when no tools
    for _ in range(5):
        status, headers, _ = await post(http, gw.url, chat("hello", model="r", tools=TOOLS))
        assert status == 200 and headers["x-turnout-target"] == "tooled"
    assert len(plain.state.attempts()) == 1
    # A prompt longer than every context window goes nowhere: 400, no upstream attempt.
    status, _, body = await post(http, gw.url, chat("word " * 40_000, model="r"))
    assert status == 400
    assert body["error"]["code"] == "no_capable_target" and "context" in body["error"]["message"]
    assert len(plain.state.attempts()) + len(tooled.state.attempts()) == 6


async def test_third_party_policy_loaded_by_module_and_class(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory("sim-a"), await sim_factory("sim-b")
    cfg = config(
        {"a": a, "b": b},
        {},
        [
            {
                "alias": "r",
                "candidates": ["m@a", "m@b"],
                "policy": {
                    "name": "policies.examples.prefer_provider:PreferProvider",
                    "params": {"providers": ["b"]},
                },
            }
        ],
    )
    gw = await gateway_factory(cfg)
    for _ in range(3):
        status, headers, _ = await post(http, gw.url, chat("hello", model="r"))
        assert status == 200 and headers["x-turnout-target"] == "m@b"
    assert a.state.attempts() == []


async def test_cost_quality_sends_easy_requests_cheap_and_hard_ones_strong(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    cheap, strong = await sim_factory("cheap"), await sim_factory("strong")
    cfg = config(
        {"c": cheap, "s": strong},
        {
            "small": {
                "provider": "c",
                "model": "small",
                "context_window": 128000,
                "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.4},
                "capabilities": {"chat": 0.7, "code": 0.5},
            },
            "big": {
                "provider": "s",
                "model": "big",
                "context_window": 128000,
                "price": {"input_per_mtok": 5.0, "output_per_mtok": 15.0},
                "capabilities": {"chat": 0.9, "code": 0.95},
            },
        },
        [{"alias": "r", "candidates": ["big", "small"], "policy": "cost_quality"}],
    )
    gw = await gateway_factory(cfg)
    status, headers, _ = await post(http, gw.url, chat("Say hello to my friend", model="r"))
    assert status == 200 and headers["x-turnout-target"] == "small"
    hard = "Write a Python function that parses this JSON and fix the bug in my code: def f(x):"
    status, headers, _ = await post(http, gw.url, chat(hard, model="r"))
    assert status == 200 and headers["x-turnout-target"] == "big"


async def test_feedback_reaches_the_route_and_names_the_target(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a = await sim_factory("sim-a")
    cfg = config({"a": a}, {}, [{"alias": "r", "candidates": ["m@a"], "policy": "adaptive"}])
    gw = await gateway_factory(cfg)
    status, headers, _ = await post(http, gw.url, chat("hello", model="r"))
    assert status == 200
    rid = headers["x-request-id"]
    async with http.post(gw.url + "/v1/feedback", json={"request_id": rid, "score": 0.9}) as r:
        assert r.status == 200
        assert await r.json() == {"status": "recorded", "route": "r", "target": "m@a"}
    async with http.post(gw.url + "/v1/feedback", json={"request_id": rid, "score": 0.0}) as r:
        assert r.status == 409  # one verdict per answer: a replay must not skew the learning
        assert (await r.json())["error"]["param"] == "request_id"
    async with http.post(gw.url + "/v1/feedback", json={"request_id": "nope", "score": 1}) as r:
        assert r.status == 404 and (await r.json())["error"]["param"] == "request_id"
    async with http.post(gw.url + "/v1/feedback", json={"request_id": rid, "score": 7}) as r:
        assert r.status == 400 and (await r.json())["error"]["param"] == "score"


async def test_agent_roles_pick_their_own_route_by_metadata(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A multi-agent system sends every agent to model "r"; the planner (by header), the
    coder (by body metadata) and everyone else (no match) each get their own candidates."""
    a, b, c = await sim_factory("sim-a"), await sim_factory("sim-b"), await sim_factory("sim-c")
    cfg = config(
        {"a": a, "b": b, "c": c},
        {},
        [
            {
                "alias": "r",
                "match": {"headers": {"X-Agent-Role": "planner"}},
                "candidates": ["m@a"],
            },
            {"alias": "r", "match": {"metadata": {"role": "coder"}}, "candidates": ["m@b"]},
            {"alias": "r", "candidates": ["m@c"]},
        ],
    )
    gw = await gateway_factory(cfg)
    _, h, _ = await post(
        http, gw.url, chat("hello", model="r"), headers={"x-agent-role": "planner"}
    )
    assert h["x-turnout-target"] == "m@a"
    _, h, _ = await post(http, gw.url, chat("hello", model="r", metadata={"role": "coder"}))
    assert h["x-turnout-target"] == "m@b"
    _, h, _ = await post(http, gw.url, chat("hello", model="r", metadata={"role": "critic"}))
    assert h["x-turnout-target"] == "m@c"
    async with http.get(gw.url + "/v1/models") as r:
        assert [m["id"] for m in (await r.json())["data"]] == ["r"]


def test_a_route_shadowed_by_an_earlier_catch_all_is_rejected() -> None:
    import pytest

    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_data(
            {
                "providers": {"a": {"base_url": "http://127.0.0.1:1/v1"}},
                "routes": [
                    {"alias": "r", "candidates": ["m@a"]},
                    {"alias": "r", "match": {"user": "u1"}, "candidates": ["m@a"]},
                ],
            },
            env={},
        )
    assert [str(i) for i in info.value.issues] == [
        "routes[1].alias: duplicate alias 'r': an earlier route for it has no `match`, "
        "so this one could never be chosen"
    ]
