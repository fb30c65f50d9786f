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
