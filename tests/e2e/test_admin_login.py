"""The dashboard's sign-in (gateway/admin/login.py, gateway/admin/access.py): the admin token is
given once, in a form, for an HttpOnly session cookie; a request the cookie alone signs in may
change nothing unless it comes from the gateway's own pages. Real gateway, sim and sockets; the
cookie is carried by hand (aiohttp's jar keeps none for an IP address)."""

from __future__ import annotations

import logging
import time
from http.cookies import Morsel
from pathlib import Path

import aiohttp
import pytest
import yaml

from gateway.admin.session import COOKIE, SESSION_S, issue
from gateway.config import load_file
from gateway.edge.server import Server
from tests.builders import GatewayFactory, SimFactory, make_config

TOKEN = "s3cret-token-0123456789"


async def guarded_gateway(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Server:
    sim = await sim_factory("sim-a")
    server = {"host": "127.0.0.1", "port": 0, "admin_token": TOKEN}
    return await gateway_factory(
        make_config({"a": sim.base_url}, {"chat": ["m@a"]}, extra={"server": server})
    )


async def sign_in(http: aiohttp.ClientSession, gw: Server, **headers: str) -> Morsel[str]:
    async with http.post(
        gw.url + "/ui/login", data={"token": TOKEN}, headers=headers, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "../ui"
        return r.cookies[COOKIE]


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


async def test_signing_in_sets_a_signed_http_only_cookie(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await guarded_gateway(sim_factory, gateway_factory)
    async with http.get(gw.url + "/ui/login") as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert "form-action 'self'" in r.headers["Content-Security-Policy"]
        page = await r.text()
    assert 'method="post"' in page and 'name="token"' in page and 'type="password"' in page

    caplog.set_level(logging.INFO)
    async with http.post(
        gw.url + "/ui/login", data={"token": "wrong-guess"}, allow_redirects=False
    ) as r:
        assert r.status == 401 and COOKIE not in r.cookies
        assert "not the admin token" in await r.text()
    assert "wrong-guess" not in caplog.text and "sign-in refused" in caplog.text

    session = await sign_in(http, gw)
    assert session["httponly"] is True and session["samesite"] == "Strict"
    assert session["path"] == "/" and session["max-age"] == str(SESSION_S)
    assert not session["secure"]  # plain http: a Secure cookie would never come back
    assert TOKEN not in session.value and TOKEN not in caplog.text
    for path in ("/ui", "/admin/targets", "/admin/traces", "/readyz"):
        async with http.get(gw.url + path, headers=cookie(session.value)) as r:
            assert r.status == 200, path
    async with http.get(gw.url + "/readyz", headers=cookie(session.value)) as r:
        assert "health_store" in await r.json()  # signed in: the whole answer

    # Behind a TLS-terminating proxy the cookie is Secure.
    behind_tls = await sign_in(http, gw, **{"X-Forwarded-Proto": "https"})
    assert behind_tls["secure"] is True


async def test_a_session_ends_when_it_expires_or_the_token_changes(
    tmp_path: Path,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory("sim-a")
    data = {
        "server": {"host": "127.0.0.1", "port": 0, "admin_token": TOKEN, "config_poll_s": 0},
        "providers": {"a": {"base_url": sim.base_url}},
        "routes": [{"alias": "chat", "candidates": ["m@a"]}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    gw = await gateway_factory(load_file(path, env={}))
    expired = issue(TOKEN, time.time() - SESSION_S - 1)
    async with http.get(gw.url + "/admin/targets", headers=cookie(expired)) as r:
        assert r.status == 401
    async with http.get(gw.url + "/ui", headers=cookie(expired), allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "ui/login"

    session = (await sign_in(http, gw)).value
    async with http.get(gw.url + "/admin/targets", headers=cookie(session)) as r:
        assert r.status == 200
    data["server"]["admin_token"] = "the-rotated-token-987654"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    async with http.post(
        gw.url + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert r.status == 200
    async with http.get(gw.url + "/admin/targets", headers=cookie(session)) as r:
        assert r.status == 401  # a new token: every session signed with the old one is over


async def test_a_cookie_alone_changes_nothing_from_another_site(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Before: the admin plane had no cookie, so no cross-site request could use it; now that
    a browser holds one, reload and the route dry run need the gateway's own origin."""
    gw = await guarded_gateway(sim_factory, gateway_factory)
    signed_in = cookie((await sign_in(http, gw)).value)
    host = gw.url.removeprefix("http://")
    refused = [
        {},  # no Origin, no Sec-Fetch-Site: not provably the gateway's own page
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": gw.url, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for extra in refused:
        async with http.post(gw.url + "/admin/reload", headers={**signed_in, **extra}) as r:
            assert r.status == 403, extra
            err = (await r.json())["error"]
            assert err["code"] == "cross_site_request" and err["type"] == "permission_error"
    async with http.post(
        gw.url + "/admin/route", json={"model": "chat", "messages": []}, headers=signed_in
    ) as r:
        assert r.status == 403
    allowed = [{"Origin": f"http://{host}"}, {"Sec-Fetch-Site": "same-origin"}]
    for extra in allowed:
        async with http.post(gw.url + "/admin/reload", headers={**signed_in, **extra}) as r:
            assert r.status == 409, extra  # past the guard: the config is not a file
    # A script's Bearer request is never cross-site: no Origin needed.
    async with http.post(
        gw.url + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert r.status == 409
    async with http.get(gw.url + "/admin/events", headers=signed_in) as r:
        assert r.status == 200  # reading needs no Origin


async def test_signing_out_clears_the_cookie(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gw = await guarded_gateway(sim_factory, gateway_factory)
    signed_in = cookie((await sign_in(http, gw)).value)
    async with http.post(gw.url + "/ui/logout", headers=signed_in, allow_redirects=False) as r:
        assert r.status == 403  # another site may not sign the operator out either
    async with http.post(
        gw.url + "/ui/logout", headers={**signed_in, "Origin": gw.url}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "login"
        cleared = r.cookies[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/"


async def test_without_a_token_there_is_nothing_to_sign_in_to(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("sim-a")
    gw = await gateway_factory(make_config({"a": sim.base_url}, {"chat": ["m@a"]}))
    async with http.get(gw.url + "/ui/login", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "../ui"
    async with http.post(gw.url + "/ui/login", data={"token": "x"}, allow_redirects=False) as r:
        assert r.status == 303 and COOKIE not in r.cookies
    async with http.get(gw.url + "/ui") as r:
        assert r.status == 200
