"""A client, Turnout and a tiny upstream in one process, on loopback: N chat requests
(`--stream`: N streamed answers of 20 content chunks each).

    python -m ops.bench.inproc 500      # run from the tree whose gateway is measured
    python -m ops.bench.inproc 500 --keys   # with 100 client keys configured, one sent
    python -m ops.bench.inproc 500 --limits # the same keys, each with rpm, tpm and budgets
    python -m ops.bench.inproc 500 --anthropic   # the upstream speaks the Messages API:
                                                 # every request and answer is translated
    python -m ops.bench.inproc 500 --gemini      # ... or Gemini's generateContent
    python -m ops.bench.inproc 500 --messages    # an Anthropic client (POST /v1/messages):
                                                 # translated to the OpenAI upstream, or
                                                 # with --anthropic passed through as sent
    python -m ops.bench.inproc 500 --responses   # a Responses client (POST /v1/responses):
                                                 # always translated (to --anthropic too)
    python -m ops.bench.inproc 500 --passthrough # the bare aiohttp pass-through instead
    python -m ops.bench.inproc 500 --direct      # no proxy: the client and upstream alone

The workload `ops.bench.instructions` counts under callgrind: everything in one process, so
an instruction count covers the whole request path and nothing else varies between runs.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import orjson
from aiohttp import web

from gateway.config import load_data

try:
    from gateway.edge.app import build_app
    from gateway.edge.server import Server
except ImportError:  # a tree from before the pipeline layout (8f4bffa), for --rev
    from gateway.app import build_app  # type: ignore[no-redef,import-not-found]
    from gateway.server import Server  # type: ignore[no-redef,import-not-found]

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
REQUEST = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "hello"}]})
STREAM_REQUEST = orjson.dumps(
    {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
)
MESSAGES_REQUEST = orjson.dumps(
    {"model": "bench", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
)
MESSAGES_STREAM_REQUEST = orjson.dumps(
    {
        "model": "bench",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }
)
RESPONSES_REQUEST = orjson.dumps({"model": "bench", "input": "hello"})
RESPONSES_STREAM_REQUEST = orjson.dumps({"model": "bench", "input": "hello", "stream": True})
# The client's format -> (path, request, streamed request).
CLIENTS = {
    "openai": ("/v1/chat/completions", REQUEST, STREAM_REQUEST),
    "messages": ("/v1/messages", MESSAGES_REQUEST, MESSAGES_STREAM_REQUEST),
    "responses": ("/v1/responses", RESPONSES_REQUEST, RESPONSES_STREAM_REQUEST),
}
STREAM_EVENTS = 20  # content chunks per streamed answer, then a finish chunk and [DONE]


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "m"}
    return b"data: " + orjson.dumps({**body, "choices": [choice]}) + b"\n\n"


STREAM_BODY = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        *(_chunk({"content": f" word{i}"}) for i in range(STREAM_EVENTS)),
        _chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]
)
ANTHROPIC_ANSWER = orjson.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
)


def _event(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


ANTHROPIC_STREAM = b"".join(
    [
        _event(
            "message_start",
            {
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": "m",
                    "content": [],
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                }
            },
        ),
        _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        *(
            _event(
                "content_block_delta",
                {"index": 0, "delta": {"type": "text_delta", "text": f" word{i}"}},
            )
            for i in range(STREAM_EVENTS)
        ),
        _event("content_block_stop", {"index": 0}),
        _event(
            "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}}
        ),
        _event("message_stop", {}),
    ]
)


def _gemini(parts: list[dict[str, str]], finish: str | None = None) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 1, "candidatesTokenCount": 20, "totalTokenCount": 21}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": "m",
        "responseId": "r",
    }


GEMINI_ANSWER = orjson.dumps(_gemini([{"text": "hi"}], "STOP"))
GEMINI_STREAM = b"".join(
    [
        *(
            b"data: " + orjson.dumps(_gemini([{"text": f" word{i}"}])) + b"\r\n\r\n"
            for i in range(STREAM_EVENTS - 1)
        ),
        b"data: " + orjson.dumps(_gemini([{"text": " last"}], "STOP")) + b"\r\n\r\n",
    ]
)
WORKERS = 4
WARM_UP = 80


async def _upstream(request: web.Request) -> web.Response:
    body = await request.read()
    if b'"stream":true' in body:
        return web.Response(body=STREAM_BODY, content_type="text/event-stream")
    return web.Response(body=ANSWER, content_type="application/json")


CLIENT_KEY = "tk-bench-0123456789abcdefghijklmnopqrstuvwxyz"


# Limits no bench run reaches: every check and count is made, none refuses.
LIMITS = {"rpm": 10**9, "tpm": 10**12, "usd_per_day": 1e9, "usd_per_month": 1e9}
PRICED = {
    "m@u": {
        "provider": "u",
        "model": "m",
        "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
    }
}


def _clients(key: str, limits: bool = False) -> dict[str, object]:
    """100 client keys, the last one the bench's (a lookup must not depend on the count);
    with `limits`, every key has rate limits and budgets."""
    import hashlib

    extra = {"limits": LIMITS} if limits else {}
    others = {f"c{i}": {"key_sha256": f"{i:064x}", **extra} for i in range(99)}
    digest = hashlib.sha256(key.encode()).hexdigest()
    return {**others, "bench": {"key_sha256": digest, "routes": ["bench"], **extra}}


async def _anthropic_upstream(request: web.Request) -> web.Response:
    body = await request.read()
    if b'"stream":true' in body:
        return web.Response(body=ANTHROPIC_STREAM, content_type="text/event-stream")
    return web.Response(body=ANTHROPIC_ANSWER, content_type="application/json")


async def _gemini_upstream(request: web.Request) -> web.Response:
    await request.read()
    if request.path.endswith(":streamGenerateContent"):
        return web.Response(body=GEMINI_STREAM, content_type="text/event-stream")
    return web.Response(body=GEMINI_ANSWER, content_type="application/json")


async def _passthrough(upstream: str) -> tuple[web.AppRunner, str]:
    """`ops.bench.passthrough`'s app, in this process: the floor to compare against."""
    from ops.bench import passthrough

    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[passthrough.UPSTREAM] = upstream
    app[passthrough.SESSION] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, limit_per_host=100),
        timeout=aiohttp.ClientTimeout(total=60),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )
    app.router.add_route("*", "/{tail:.*}", passthrough.proxy)

    async def close(app: web.Application) -> None:
        await app[passthrough.SESSION].close()

    app.on_cleanup.append(close)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def run(
    n: int,
    stream: bool = False,
    keys: bool = False,
    fmt: str = "openai",
    proxy: str = "turnout",
    limits: bool = False,
    client: str = "openai",
) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _upstream)
    app.router.add_post("/v1/messages", _anthropic_upstream)
    app.router.add_post("/v1/models/{model}:generateContent", _gemini_upstream)
    app.router.add_post("/v1/models/{model}:streamGenerateContent", _gemini_upstream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "providers": {
                "u": {
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "format": fmt,
                }
            },
            "routes": [{"alias": "bench", "candidates": ["m@u"]}],
            **({"clients": _clients(CLIENT_KEY, limits)} if keys or limits else {}),
            **({"targets": PRICED} if limits else {}),  # spend is counted at a price
        },
        env={},
    )
    gateway = Server(build_app(config), "127.0.0.1", 0, grace_s=1.0)
    await gateway.start()
    base = gateway.url
    other: web.AppRunner | None = None
    if proxy == "passthrough":
        other, base = await _passthrough(f"http://127.0.0.1:{port}")
    elif proxy == "direct":
        base = f"http://127.0.0.1:{port}"
    headers = {"Content-Type": "application/json"}
    if keys or limits:
        headers["Authorization"] = f"Bearer {CLIENT_KEY}"
    try:
        async with aiohttp.ClientSession() as http:

            async def worker(count: int) -> None:
                path, plain, streamed = CLIENTS[client]
                url, body = base + path, streamed if stream else plain
                for _ in range(count):
                    async with http.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"status {resp.status}")

            await asyncio.gather(*(worker(WARM_UP // WORKERS) for _ in range(WORKERS)))
            await asyncio.gather(*(worker(n // WORKERS) for _ in range(WORKERS)))
    finally:
        if other is not None:
            await other.cleanup()
        await gateway.stop()
        await runner.cleanup()


def main(argv: list[str]) -> int:
    import uvloop

    flags = (
        "--stream",
        "--keys",
        "--limits",
        "--anthropic",
        "--gemini",
        "--passthrough",
        "--direct",
        "--messages",
        "--responses",
    )
    args = [a for a in argv if a not in flags]
    n = int(args[0]) if args else 500
    proxy = "passthrough" if "--passthrough" in argv else "direct" if "--direct" in argv else ""
    fmt = next((f for f in ("anthropic", "gemini") if f"--{f}" in argv), "openai")
    uvloop.run(
        run(
            n,
            stream="--stream" in argv,
            keys="--keys" in argv,
            fmt=fmt,
            proxy=proxy or "turnout",
            limits="--limits" in argv,
            client=next((c for c in ("messages", "responses") if f"--{c}" in argv), "openai"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
