"""A tiny, instantly-answering OpenAI-style upstream for the benchmark floor.

It answers every POST with the same pre-serialised chat completion (the shape and size the
simulated provider sends) using aiohttp's low-level server on uvloop: no routing, no JSON
parsing of the request, no logging. It exists because ``turnout sim`` does real work per
request (parses the body, hashes an answer, keeps an attempt log) and so is slower than what
we want to measure against; ``run.py`` measures both and prints the numbers.

    python -m ops.bench.upstream --port 18001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import orjson
from aiohttp import web, web_server

BODY = orjson.dumps(
    {
        "id": "chatcmpl-bench000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "[bench] horizon harbor delta onyx november dune ember whiskey"
                    " junction pearl maple horizon.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 13, "total_tokens": 21},
        "system_fingerprint": "fp_bench",
    }
)


async def handle(request: web.BaseRequest) -> web.StreamResponse:
    await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def serve(host: str, port: int) -> None:
    server = web_server.Server(handle, access_log=None)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(server, host, port, backlog=1024, reuse_address=True)
    print(f"bench upstream listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    srv.close()
    await server.shutdown(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
