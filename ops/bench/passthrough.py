"""The floor any Python proxy pays: a minimal aiohttp pass-through, for comparison only.

aiohttp server + one shared ClientSession on uvloop. Every request is forwarded to one
upstream base URL unchanged (method, path, query, body and a few end-to-end headers); a JSON
answer is read whole and sent back, an event stream is relayed chunk by chunk as it arrives.
No parsing, no routing, no health, no retries: whatever Turnout costs above this is the
price of what it does.

    python -m ops.bench.passthrough --port 18010 --upstream http://127.0.0.1:18001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
FORWARD = ("Content-Type", "Authorization", "Accept")
SSE = "text/event-stream"


async def proxy(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    body = await request.read()
    headers = {h: request.headers[h] for h in FORWARD if h in request.headers}
    url = request.app[UPSTREAM] + request.rel_url.path_qs
    async with session.request(request.method, url, data=body, headers=headers) as upstream:
        ctype = upstream.headers.get("Content-Type", "application/octet-stream")
        if not ctype.startswith(SSE):
            data = await upstream.read()
            return web.Response(status=upstream.status, body=data, headers={"Content-Type": ctype})
        response = web.StreamResponse(
            status=upstream.status, headers={"Content-Type": ctype, "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def serve(host: str, port: int, upstream: str) -> None:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=100)
    app[SESSION] = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=60),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    print(f"passthrough listening on http://{host}:{port} -> {upstream}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await app[SESSION].close()


def main() -> None:
    parser = argparse.ArgumentParser(description="minimal aiohttp pass-through proxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:18001")
    args = parser.parse_args()
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.upstream))


if __name__ == "__main__":
    main()
