"""server.admin_token protects the operator endpoints; the API and probes stay open. The
dashboard's sign-in (the session cookie) is tests/e2e/test_admin_login.py."""

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
    for path in ("/healthz", "/readyz", "/metrics", "/v1/models", "/ui/login"):
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


async def test_the_token_is_never_accepted_in_a_query_string(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Before: `?token=` opened /admin/* and the dashboard's feeds, and so ended up in access
    logs and browser history (issue 16, item 4)."""
    sim = await sim_factory("sim-a")
    server = {"host": "127.0.0.1", "port": 0, "admin_token": "s3cret-token"}
    cfg = make_config(
        {"a": sim.base_url},
        {"chat": ["m@a"]},
        extra={"server": {**server, "metrics_need_token": True}},
    )
    gw = await gateway_factory(cfg)
    for path in ("/admin/targets", "/admin/traces", "/admin/events", "/admin/config", "/metrics"):
        async with http.get(gw.url + path + "?token=s3cret-token") as r:
            assert r.status == 401, path
            assert (await r.json())["error"]["type"] == "authentication_error"
    async with http.post(gw.url + "/admin/reload?token=s3cret-token") as r:
        assert r.status == 401
    async with http.get(gw.url + "/readyz?token=s3cret-token") as r:
        assert await r.json() == {"status": "ready"}
    # The old dashboard link leads to the sign-in form, and signs no one in.
    async with http.get(gw.url + "/ui?token=s3cret-token", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "ui/login"
        assert "Set-Cookie" not in r.headers
    async with http.get(gw.url + "/ui?token=s3cret-token") as r:
        assert r.status == 200 and str(r.url) == gw.url + "/ui/login"
        assert 'name="token"' in await r.text()
