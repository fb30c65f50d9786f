"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.config.clients import ClientConfig
from gateway.runtime.state import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
# The admin plane's app, when `server.admin_port` gives it a listener of its own.
ADMIN_APP = web.AppKey("admin_app", web.Application)

# aiohttp >= 3.14 wants typed request keys; older releases take a plain string.
_request_key: Any = getattr(web, "RequestKey", None)
REQUEST_ID: Any = _request_key("request_id", str) if _request_key else "turnout.request_id"
ROUTE: Any = _request_key("route", str) if _request_key else "turnout.route"
# the routing decision in one line, when the route or the request asked for it (debug)
EXPLANATION: Any = _request_key("explanation", str) if _request_key else "turnout.explanation"
# the client key's owner (`clients:`), when the config has client keys
CLIENT: Any = _request_key("client", ClientConfig) if _request_key else "turnout.client"
