"""Client keys end to end (issue 16): a real gateway, real sims, the `openai` SDK. Without
`clients:` anyone may call (the sidecar case, every other test); with them, only a key's
holder, on its routes, steering only what it may."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gateway.config import load_data, load_file
from gateway.config.clients import digest
from gateway.edge.context import RUNTIME
from gateway.edge.server import Server
from gateway.sim import SimServer
from tests.builders import GatewayFactory, SimFactory, chat, error_of, post

WEB_KEY = "tk-web-0123456789abcdefghijklmnop"
BATCH_KEY = "tk-batch-0123456789abcdefghijklmnop"
TARGETS = {
    "small@s": {
        "provider": "s",
        "model": "small",
        "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
        "capabilities": {"chat": 0.8},
    },
    "large@l": {
        "provider": "l",
        "model": "large",
        "price": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
        "capabilities": {"chat": 0.95},
    },
}
ROUTES: list[dict[str, Any]] = [
    # the premium route, for a planner agent that says so (routing metadata)
    {"alias": "auto", "candidates": ["large@l"], "match": {"headers": {"x-agent-role": "planner"}}},
    {"alias": "auto", "candidates": ["small@s", "large@l"], "policy": "cost_quality"},
    {"alias": "other", "candidates": ["small@s"]},
]


async def keyed_gateway(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, clients: dict[str, Any]
) -> tuple[SimServer, Server]:
    s, large = await sim_factory("s"), await sim_factory("l")
    data = {
        "providers": {
            n: {"base_url": sim.base_url, "api_key": f"key-{n}"}
            for n, sim in (("s", s), ("l", large))
        },
        "targets": TARGETS,
        "routes": ROUTES,
        "clients": clients,
        "resilience": {"same_target_retries": 0},
    }
    gw = await gateway_factory(load_data(data, env={"BATCH_KEY": BATCH_KEY}))
    return s, gw


CLIENTS = {
    "web": {"key_sha256": digest(WEB_KEY), "routes": ["auto"], "labels": {"team": "web"}},
    "batch": {"key_env": "BATCH_KEY", "overrides": ["quality_floor", "metadata", "debug"]},
}


async def test_no_key_or_an_unknown_key_is_401_in_openais_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await keyed_gateway(sim_factory, gateway_factory, CLIENTS)
    for headers in (
        {},
        {"Authorization": "Bearer tk-nobody-0123456789abcdef"},
        {"Authorization": "Basic x"},
    ):
        reply = await post(http, gw, chat(model="auto"), headers=headers)
        error_of(reply, 401, "invalid_api_key")
        assert b"tk-nobody" not in reply.body  # never echoed
    models = await http.get(gw.url + "/v1/models")
    assert models.status == 401
    assert s.state.attempts() == []  # nothing reached a provider
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi"}]
            )


async def test_a_key_is_accepted_as_bearer_or_x_api_key_and_never_forwarded(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await keyed_gateway(sim_factory, gateway_factory, CLIENTS)
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=WEB_KEY, max_retries=0) as c:
        done = await c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}]
        )
    assert done.choices[0].message.content
    reply = await post(http, gw, chat(model="auto"), headers={"x-api-key": WEB_KEY})
    assert reply.status == 200
    for seen in s.state.attempts():
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        assert headers["authorization"] == "Bearer key-s"  # the provider's key, not the client's
        assert WEB_KEY not in str(seen["headers"])


async def test_a_key_may_use_only_its_routes(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await keyed_gateway(sim_factory, gateway_factory, CLIENTS)
    auth = {"Authorization": f"Bearer {WEB_KEY}"}
    err = error_of(
        await post(http, gw, chat(model="other"), headers=auth), 403, "route_not_allowed"
    )
    assert err["param"] == "model" and err["type"] == "permission_error"
    assert s.state.attempts() == []
    batch = {"Authorization": f"Bearer {BATCH_KEY}"}
    assert (await post(http, gw, chat(model="other"), headers=batch)).status == 200


@pytest.mark.parametrize(
    ("key", "steered"), [(WEB_KEY, False), (BATCH_KEY, True)], ids=["not-allowed", "allowed"]
)
async def test_routing_overrides_count_only_for_a_key_allowed_them(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    key: str,
    steered: bool,
) -> None:
    _, gw = await keyed_gateway(sim_factory, gateway_factory, CLIENTS)
    auth = {"Authorization": f"Bearer {key}"}
    plain = await post(http, gw, chat(model="auto"), headers=auth)
    assert plain.headers["x-turnout-target"] == "small@s"  # the cheap model is good enough
    # A quality floor the cheap model does not meet: ~16x the price, if the key may ask.
    floor = await post(
        http, gw, chat(model="auto"), headers={**auth, "x-turnout-quality-floor": "0.9"}
    )
    assert floor.headers["x-turnout-target"] == ("large@l" if steered else "small@s")
    # Routing metadata: the planner's premium route.
    role = await post(http, gw, chat(model="auto"), headers={**auth, "x-agent-role": "planner"})
    assert role.headers["x-turnout-target"] == ("large@l" if steered else "small@s")
    # The debug header: the routing explanation, or nothing.
    debug = await post(http, gw, chat(model="auto"), headers={**auth, "x-turnout-debug": "route"})
    assert ("x-turnout-route" in debug.headers) is steered
    # The deadline header is an override too: a bad one is refused only where it counts.
    bad = await post(http, gw, chat(model="auto"), headers={**auth, "x-turnout-deadline-ms": "x"})
    assert bad.status == 200  # neither key may set deadlines: ignored, not even checked


async def test_a_key_set_to_refuse_gets_a_403_naming_the_override_it_may_not_send(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    strict = {**CLIENTS["web"], "forbidden_overrides": "refuse", "overrides": ["debug"]}
    s, gw = await keyed_gateway(sim_factory, gateway_factory, {**CLIENTS, "web": strict})
    auth = {"Authorization": f"Bearer {WEB_KEY}"}
    refused = await post(
        http, gw, chat(model="auto"), headers={**auth, "x-turnout-quality-floor": "0.9"}
    )
    assert refused.status == 403
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("override_not_allowed", "x-turnout-quality-floor")
    assert "x-turnout-quality-floor" in error["message"] and "debug" in error["message"]
    assert s.state.attempts() == []  # refused before routing: nothing sent
    allowed = await post(http, gw, chat(model="auto"), headers={**auth, "x-turnout-debug": "route"})
    assert allowed.status == 200 and "x-turnout-route" in allowed.headers
    plain = await post(http, gw, {**chat(model="auto"), "user": "u-1"}, headers=auth)
    assert plain.status == 200 and plain.headers["x-turnout-target"] == "small@s"  # body: ignored


def test_key_config_problems_are_reported_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    zero, one = "0" * 64, "1" * 64
    path.write_text(
        f"""
providers: {{p: {{base_url: "http://127.0.0.1:9/v1"}}}}
routes: [{{alias: chat, candidates: [m@p]}}]
clients:
  a: {{key_sha256: nothex}}
  b: {{key_env: SHORT_KEY}}
  c: {{key_sha256: "{zero}", key_env: X}}
  d: {{key_sha256: "{one}", routes: [nope], overrides: [everything]}}
  e: {{key_sha256: "{one}"}}
  f: {{key_env: SHORT_KEY, forbidden_overrides: deny}}
""",
        encoding="utf-8",
    )
    env = {"SHORT_KEY": "sekrit-123", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    err = out.stderr
    assert "clients.a.key_sha256: must be 64 hex digits" in err
    assert "clients.b.key_env: $SHORT_KEY must hold a key of at least 20 characters" in err
    assert "clients.c: give exactly one of key_sha256" in err
    assert "clients.d.routes: unknown route 'nope'" in err
    assert "clients.d.overrides: unknown override 'everything'" in err
    assert "clients.e: the same key as client 'd'" in err
    assert "clients.f.forbidden_overrides: expected one of ignore, refuse, got 'deny'" in err
    assert "sekrit-123" not in err + out.stdout


def test_turnout_key_new_prints_a_key_and_its_digest() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "key", "new", "--name", "web"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    key = out.split("keep it secret): ", 1)[1].split()[0]
    assert key.startswith("tk-") and len(key) >= 40
    assert f"key_sha256: {digest(key)}" in out and "    web:" in out


async def test_a_reload_may_not_open_what_the_start_refuses(
    tmp_path: Path,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    s = await sim_factory("s")
    path = tmp_path / "config.yaml"
    closed = (
        f'server: {{host: 127.0.0.1, port: 0, admin_token: "{"t" * 24}"}}\n'
        f'providers: {{s: {{base_url: "{s.base_url}"}}}}\n'
        "routes: [{alias: chat, candidates: [m@s]}]\n"
        f'clients: {{app: {{key_sha256: "{digest(WEB_KEY)}"}}}}\n'
    )
    path.write_text(closed, encoding="utf-8")
    gw = await gateway_factory(load_file(path))
    # As if it listened on every interface (the tests themselves stay on loopback).
    gw.app[RUNTIME].bound_host = "0.0.0.0"
    path.write_text(closed.replace(f'clients: {{app: {{key_sha256: "{digest(WEB_KEY)}"}}}}\n', ""))
    admin = {"Authorization": f"Bearer {'t' * 24}"}
    async with http.post(gw.url + "/admin/reload", headers=admin) as resp:
        assert resp.status == 422
        body = await resp.json()
    assert "refusing to serve /v1/* on 0.0.0.0" in str(body)
    # Still closed: the old config, keys and all.
    assert (await post(http, gw, chat(model="chat"))).status == 401


async def test_what_leaves_for_the_provider_is_only_what_must(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Before: `baggage` (user and tenant ids, whatever the caller's services put there) was
    forwarded to every provider."""
    s, gw = await keyed_gateway(sim_factory, gateway_factory, CLIENTS)
    sent = {
        "Authorization": f"Bearer {WEB_KEY}",
        "baggage": "user.id=alice,tenant=acme",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "user-agent": "my-app/1.0",
        "cookie": "session=abc",
        "x-custom": "secret-ish",
    }
    assert (await post(http, gw, chat(model="auto"), headers=sent)).status == 200
    [seen] = s.state.attempts()
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["user-agent"] == "my-app/1.0" and "traceparent" in headers
    for private in ("baggage", "cookie", "x-custom"):
        assert private not in headers, private
    assert headers["authorization"] == "Bearer key-s"


async def test_a_key_lists_only_the_models_it_may_use(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, gw = await keyed_gateway(sim_factory, gateway_factory, CLIENTS)
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=WEB_KEY, max_retries=0) as c:
        assert [m.id async for m in c.models.list()] == ["auto"]
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=BATCH_KEY, max_retries=0) as c:
        assert sorted([m.id async for m in c.models.list()]) == ["auto", "other"]


async def test_only_the_key_that_asked_may_judge_the_answer(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Before: anyone could send feedback on anyone's request id (read off /admin/traces, say):
    40 forged zero scores moved an adaptive route's means from 0.98/0.93 to 0.70/0.70."""
    _, gw = await keyed_gateway(sim_factory, gateway_factory, CLIENTS)
    web = {"Authorization": f"Bearer {WEB_KEY}"}
    batch = {"Authorization": f"Bearer {BATCH_KEY}"}
    answer = await post(http, gw, chat(model="auto"), headers=web)
    rid = answer.headers["x-request-id"]
    verdict = {"request_id": rid, "score": 0.0}
    async with http.post(gw.url + "/v1/feedback", json=verdict, headers=batch) as r:
        assert r.status == 403
        assert (await r.json())["error"]["code"] == "not_your_answer"
    async with http.post(gw.url + "/v1/feedback", json=verdict) as r:
        assert r.status == 401  # no key at all
    async with http.post(gw.url + "/v1/feedback", json=verdict, headers=web) as r:
        assert r.status == 200  # its own key: recorded, once
    async with http.post(gw.url + "/v1/feedback", json=verdict, headers=web) as r:
        assert r.status == 409
