"""The files under gateway/static/, as the gateway serves them: the two pages (`/ui`, the
dashboard; `/ui/login`, its sign-in form) and what they load (`/ui/dashboard.js`, `.css`).
Everything comes from the gateway itself: no CDN, works offline."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parents[1] / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}  # /ui/{name}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'",
}


@functools.cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def page_response(
    name: str, status: int = 200, edit: Callable[[str], str] | None = None
) -> web.Response:
    """One of the HTML pages; `edit` fills in what differs per answer."""
    text = _read(name) if edit is None else edit(_read(name))
    return web.Response(
        status=status, text=text, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def asset_response(name: str) -> web.Response | None:
    """`/ui/{name}`: a script or style sheet, None for any other name."""
    kind = ASSETS.get(name)
    if kind is None:
        return None
    return web.Response(text=_read(name), content_type=kind, charset="utf-8", headers=_HEADERS)
