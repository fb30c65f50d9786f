"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.config.clients import ClientConfig
from gateway.runtime.state import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
# The admin plane's app, when `server.admin_port` gives it a listener of its own.
ADMIN_APP = web.AppKey("admin_app", web.Application)

# aiohttp >= 3.14 wants typed request keys; older releases take a plain string.
_request_key: Any = getattr(web, "RequestKey", None)


@dataclass(slots=True)
class Call:
    """What the envelope and the handler tell each other about one request: one object under
    one key (each lookup in a request's mapping is a few Python calls in aiohttp)."""

    request_id: str
    route: str = "-"  # the alias it was routed to (a metric label): configured aliases only
    explanation: str = ""  # the routing decision in one line, when the caller asked (debug)
    client: ClientConfig | None = None  # the client key's owner, as request[CLIENT]


CALL: Any = _request_key("call", Call) if _request_key else "turnout.call"
# the client key's owner (`clients:`), when the config has client keys
CLIENT: Any = _request_key("client", ClientConfig) if _request_key else "turnout.client"
