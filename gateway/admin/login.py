"""Signing in to the dashboard: `GET /ui/login` (the form), `POST /ui/login` (the token, as
a form field, for a session cookie), `POST /ui/logout`.

The cookie (`gateway.admin.session`): `HttpOnly` (no script reads it), `SameSite=Strict`,
`Path=/` (the page is /ui, its feeds /admin/*), `Max-Age` 12 h, and `Secure` when the request
came over TLS or with `X-Forwarded-Proto: https` (a TLS-terminating proxy in front). That
header is believed from anyone: all it can do is add `Secure`, and a forged one only keeps
the sender's own browser from sending the cookie back over plain http.
"""

from __future__ import annotations

import hmac
import html
import logging
import time

from aiohttp import web

from gateway.admin import access, session
from gateway.admin.assets import page_response
from gateway.edge.context import RUNTIME
from gateway.telemetry.logs import RateLimitedLog

log = logging.getLogger("turnout.admin")
_refusals = RateLimitedLog(log)
_MESSAGE = "<!--message-->"  # where login.html says why it is shown again


def _over_tls(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _see(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _form(status: int = 200, message: str = "") -> web.Response:
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return page_response("login.html", status, lambda text: text.replace(_MESSAGE, note))


async def login_page(request: web.Request) -> web.Response:
    if not request.app[RUNTIME].config.server.admin_token:
        return _see("../ui")  # nothing to sign in to
    return _form()


async def login(request: web.Request) -> web.Response:
    token = request.app[RUNTIME].config.server.admin_token
    if not token:
        return _see("../ui")
    form = await request.post()
    given = form.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        _refusals.warning("admin_login", "dashboard sign-in refused: not the admin token")
        return _form(401, "That is not the admin token.")
    response = _see("../ui")
    response.set_cookie(
        session.COOKIE,
        session.issue(token, time.time()),
        max_age=session.SESSION_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_over_tls(request) or None,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    if not access.same_origin(request):
        raise access.cross_site()
    response = _see("login")
    response.del_cookie(session.COOKIE, path="/", httponly=True, samesite="Strict")
    return response
