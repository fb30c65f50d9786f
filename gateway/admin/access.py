"""Who may use the admin plane, and how a request proves it.

The admin plane is `/admin/*`, `/ui` and `/metrics` (`is_admin_path`). With
`server.admin_token` unset it is open to whoever reaches its listener (gateway.edge.exposure
keeps that to loopback). With it set, a request proves it holds the token by one of:

- `Authorization: Bearer <token>`: scripts, curl, Prometheus;
- the session cookie the `/ui/login` form sets (gateway.admin.session): the dashboard.

Never in the URL: `?token=` is ignored (URLs end up in access logs, proxies and browser
history), so `/admin/targets?token=...` is a 401.

Cross-site requests: a browser attaches the cookie by itself, so a request the cookie alone
authenticates may change nothing unless it comes from the gateway's own pages. The cookie is
`SameSite=Strict` (a browser keeps it off requests other sites start), and on top of that a
cookie-authenticated request other than GET/HEAD/OPTIONS must be same-origin: its
`Sec-Fetch-Site` is `same-origin`, or, from a browser that sends no `Sec-Fetch-Site` (plain
http to an address other than localhost), its `Origin` names the host it was sent to (`Host`).
Else 403 `cross_site_request`. A Bearer request needs no such check: no page can make a
browser add that header to a request to another site.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web

from gateway.admin import session
from gateway.config.model import Config
from gateway.edge.context import RUNTIME
from gateway.edge.errors import Forbidden, GatewayError, Unauthorized

Proof = Literal["open", "bearer", "cookie"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_admin_path(path: str) -> bool:
    """Is `path` on the admin plane (its own listener, when `server.admin_port` is set)?"""
    return path.startswith(("/admin/", "/ui/")) or path in ("/ui", "/metrics")


def holds_admin_token(config: Config, headers: Mapping[str, str]) -> bool:
    """`Authorization: Bearer <server.admin_token>`, compared in constant time."""
    given = headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return False
    return hmac.compare_digest(given[7:].encode(), config.server.admin_token.encode())


def proof(config: Config, request: web.Request) -> Proof | None:
    """How `request` may use the admin plane: "open" (no token is set), "bearer", "cookie"
    (a valid session); None: it may not."""
    token = config.server.admin_token
    if not token:
        return "open"
    if holds_admin_token(config, request.headers):
        return "bearer"
    value = request.cookies.get(session.COOKIE)
    if value and session.valid(token, value, time.time()):
        return "cookie"
    return None


def same_origin(request: web.Request) -> bool:
    """Did a page of this very origin send `request` (see the module's docstring)?"""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin", "")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.host.lower()


def cross_site() -> Forbidden:
    return Forbidden(
        "A request signed in by the session cookie must come from the gateway's own pages "
        "(same origin); scripts send Authorization: Bearer instead.",
        code="cross_site_request",
    )


def refusal(request: web.Request) -> GatewayError | None:
    """Why `request` may not go on (None: it may): the guard the app runs first.

    `/admin/*` (and `/metrics` with `server.metrics_need_token`) need a proof; the pages
    under `/ui` check for themselves (the dashboard sends a stranger to the login form)."""
    config = request.app[RUNTIME].config
    path = request.path
    guarded = path.startswith("/admin/") or (
        path == "/metrics" and config.server.metrics_need_token
    )
    if not guarded:
        return None
    how = proof(config, request)
    if how is None:
        return Unauthorized(
            "This endpoint needs the admin token: send Authorization: Bearer <token>, or "
            "sign in at /ui/login."
        )
    if how == "cookie" and request.method not in SAFE_METHODS and not same_origin(request):
        return cross_site()
    return None
