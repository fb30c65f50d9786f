"""server.admin_token protects the operator endpoints; the API and probes stay open."""

from __future__ import annotations

import aiohttp

from tests.builders import CHAT, GatewayFactory, SimFactory, chat, make_config


async def test_admin_endpoints_need_the_token_when_one_is_set(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("sim-a")
    cfg = make_config(
        {"a": sim.base_url},
        {"chat": ["m@a"]},
        extra={"server": {"host": "127.0.0.1", "port": 0, "admin_token": "s3cret-token"}},
    )
    gw = await gateway_factory(cfg)
    for path in ("/admin/targets", "/admin/traces", "/admin/events"):
        async with http.get(gw.url + path) as r:
            assert r.status == 401
            err = (await r.json())["error"]
            assert err["type"] == "authentication_error" and "s3cret" not in err["message"]
        async with http.get(gw.url + path, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with http.get(gw.url + path, headers={"Authorization": "Bearer s3cret-token"}) as r:
            assert r.status == 200
    async with http.post(gw.url + "/admin/reload") as r:
        assert r.status == 401
    for path in ("/healthz", "/readyz", "/metrics", "/v1/models", "/ui"):
        async with http.get(gw.url + path) as r:
            assert r.status == 200, path
    async with http.post(gw.url + CHAT, json=chat()) as r:
        assert r.status == 200


async def test_readyz_tells_a_stranger_only_ready_and_metrics_may_need_the_token(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Before: /readyz told anyone the config file's path, the health store's state and the
    last reload error; /metrics could not be closed at all (issue 16, item 4)."""
    sim = await sim_factory("sim-a")
    server = {"host": "127.0.0.1", "port": 0, "admin_token": "s3cret-token"}
    cfg = make_config(
        {"a": sim.base_url},
        {"chat": ["m@a"]},
        extra={"server": {**server, "metrics_need_token": True}},
    )
    gw = await gateway_factory(cfg)
    token = {"Authorization": "Bearer s3cret-token"}
    async with http.get(gw.url + "/readyz") as r:
        assert r.status == 200 and await r.json() == {"status": "ready"}
    async with http.get(gw.url + "/readyz", headers=token) as r:
        body = await r.json()
        assert r.status == 200 and {"health_store", "config", "reloads"} <= set(body)
    async with http.get(gw.url + "/metrics") as r:
        assert r.status == 401
    async with http.get(gw.url + "/metrics", headers=token) as r:
        assert r.status == 200 and "turnout_" in await r.text()
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200
