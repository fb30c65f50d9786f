"""The soak's client, a process of its own (`python -m ops.bench.soak_client --url ...`):
closed-loop load of chat requests, a share of them streaming, every answer checked; one JSON
progress line on stdout every --sample-every completed requests, and a final one."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from ops.bench.net import is_loopback

ALIAS = "soak"
MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
CHAT_BODY = json.dumps({"model": ALIAS, "messages": MESSAGES}, separators=(",", ":"))
STREAM_BODY = json.dumps(
    {"model": ALIAS, "messages": MESSAGES, "stream": True}, separators=(",", ":")
)


async def client_run(args: argparse.Namespace) -> dict[str, Any]:
    """Closed-loop load: each connection sends its next request as soon as the previous answer
    is read. Prints a JSON progress line every `sample_every` completed requests."""
    import random

    import aiohttp

    json_headers = {"Content-Type": "application/json"}
    sse_headers = {**json_headers, "Accept": "text/event-stream"}
    non_stream, stream = CHAT_BODY.encode(), STREAM_BODY.encode()
    rng = random.Random(args.seed)
    statuses: Counter[str] = Counter()  # "<kind> <status>"
    exceptions: Counter[str] = Counter()
    checks: Counter[str] = Counter()  # stream endings and JSON answers
    targets: Counter[str] = Counter()
    state = {"next": 0, "done": 0, "errors": 0, "failovers": 0}
    start = time.perf_counter()
    stop_at = start + args.max_seconds

    def progress(final: bool = False) -> None:
        line: dict[str, Any] = {
            "done": state["done"],
            "t": round(time.perf_counter() - start, 3),
            "errors": state["errors"],
            "failovers": state["failovers"],
        }
        if final:
            line.update(
                final=True,
                stopped_by="time" if state["done"] < args.requests else "count",
                statuses=dict(statuses),
                exceptions=dict(exceptions),
                checks=dict(checks),
                targets=dict(targets),
            )
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def finish(kind: str, status: int, headers: Any, ok: bool) -> None:
        statuses[f"{kind} {status}"] += 1
        if status != 200 or not ok:
            state["errors"] += 1
        if status == 200:
            targets[headers.get("x-turnout-target", "?")] += 1
            if headers.get("x-turnout-attempts", "1") != "1":
                state["failovers"] += 1

    async def one(session: aiohttp.ClientSession, streaming: bool) -> None:
        kind = "stream" if streaming else "json"
        body, headers = (stream, sse_headers) if streaming else (non_stream, json_headers)
        async with session.post(args.url, data=body, headers=headers) as resp:
            if resp.status != 200 or not streaming:
                raw = await resp.read()
                ok = True
                if resp.status == 200:
                    try:
                        ok = bool(json.loads(raw).get("choices"))
                    except ValueError:
                        ok = False
                    checks["json ok" if ok else "json BROKEN"] += 1
                finish(kind, resp.status, resp.headers, ok)
                return
            tail = b""
            async for chunk in resp.content.iter_any():
                tail = (tail + chunk)[-2048:]
            last = tail.rstrip(b"\r\n").rsplit(b"\n\n", 1)[-1].lstrip(b"\r\n")
            if last == b"data: [DONE]":
                ending = "stream [DONE]"
            elif last.startswith(b"event: error"):
                ending = "stream in-band error"
            else:
                ending = "stream NO TERMINATOR"
            checks[ending] += 1
            finish(kind, 200, resp.headers, ending != "stream NO TERMINATOR")

    async def worker(session: aiohttp.ClientSession) -> None:
        while state["next"] < args.requests and time.perf_counter() < stop_at:
            state["next"] += 1
            streaming = rng.random() < args.stream_ratio
            try:
                await one(session, streaming)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                exceptions[type(exc).__name__] += 1
                state["errors"] += 1
            state["done"] += 1
            if state["done"] % args.sample_every == 0:
                progress()

    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        workers = [worker(session) for _ in range(args.connections)]
        await asyncio.wait_for(asyncio.gather(*workers), timeout=args.max_seconds + 40)
    progress(final=True)
    return state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.soak_client")
    p.add_argument("--url", required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--max-seconds", type=float, required=True)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--stream-ratio", type=float, default=0.3)
    p.add_argument("--sample-every", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if not is_loopback(args.url):
        p.error(f"only loopback targets are allowed, got {args.url}")
    try:
        import uvloop

        uvloop.run(client_run(args))
    except ImportError:
        asyncio.run(client_run(args))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
