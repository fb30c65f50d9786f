"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from aiohttp import web

from gateway.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
REQUEST_ID = "switchyard.request_id"
