"""Python load generators for the benchmark (run as separate processes by ``run.py``,
``python -m ops.bench.loadgen closed|stream ...``).

``closed``  a closed-loop load: N connections, each sending the next POST as soon as the
            previous answer is read (the fallback when neither wrk nor hey is installed).
``stream``  an open-loop streaming client: a fixed arrival rate per target, interleaved
            across targets, measuring time to the first content token and total time.

Both print one JSON object on stdout. Times are taken with ``time.perf_counter`` (uvloop's
``loop.time()`` only has millisecond resolution). Every loop is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from ops.bench.net import is_loopback
from ops.bench.stats import percentile


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=30),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )


# ---- closed loop ---------------------------------------------------------------------------


async def closed_loop(
    url: str, body: bytes, connections: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    async with _session(connections) as session:
        start = time.perf_counter()
        measure_from = start + warmup_s
        stop_at = measure_from + duration_s

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    if t0 >= measure_from:
                        errors[type(exc).__name__] += 1
                    continue
                t1 = time.perf_counter()
                if t0 >= measure_from and t1 <= stop_at:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(t1 - t0)

        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(connections))),
            timeout=warmup_s + duration_s + 35,
        )
    ok = len(latencies)
    return {
        "tool": "python-aiohttp",
        "requests": sum(statuses.values()),
        "ok": ok,
        "duration_s": duration_s,
        "rps": ok / duration_s,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000.0


# ---- open-loop streaming -------------------------------------------------------------------


async def _one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, deadline_s: float
) -> dict[str, Any]:
    """Send one streaming request; return ttft and total (seconds) or an error."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    t0 = time.perf_counter()
    ttft: float | None = None
    buf = b""
    tail = b""
    try:
        async with asyncio.timeout(deadline_s):
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    await resp.read()
                    return {"error": f"HTTP {resp.status}"}
                async for chunk in resp.content.iter_any():
                    now = time.perf_counter()
                    if ttft is None:
                        buf += chunk
                        events = buf.split(b"\n\n")
                        buf = events.pop()
                        for event in events:
                            if _has_content(event):
                                ttft = now - t0
                                break
                    tail = (tail + chunk)[-64:]
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return {"error": type(exc).__name__}
    total = time.perf_counter() - t0
    if ttft is None:
        return {"error": "no content token"}
    if b"data: [DONE]" not in tail:
        return {"error": "no [DONE]"}
    return {"ttft": ttft, "total": total}


def _has_content(event: bytes) -> bool:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data == b"[DONE]":
                return False
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                return False
            for choice in obj.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    return True
    return False


async def open_loop(
    targets: list[tuple[str, str]],
    body: bytes,
    rate: float,
    warmup_s: float,
    duration_s: float,
    arrivals: str = "fixed",
) -> dict[str, Any]:
    """Each target gets requests at `rate` per second; target k's schedule is offset by
    k / (rate * len(targets)) so the targets interleave and never start together.

    ``fixed`` spaces requests exactly 1/rate apart; ``poisson`` draws exponential gaps from a
    seeded generator, the same gaps for every target."""
    interval = 1.0 / rate
    n_warm = round(warmup_s * rate)
    n_total = n_warm + round(duration_s * rate)
    if arrivals == "poisson":
        rng = random.Random(20)
        offsets, t = [], 0.0
        for _ in range(n_total):
            offsets.append(t)
            t += rng.expovariate(rate)
    else:
        offsets = [i * interval for i in range(n_total)]
    sessions = [_session(1000) for _ in targets]
    results: list[list[dict[str, Any]]] = [[] for _ in targets]
    lags: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        start = time.perf_counter() + 0.05

        async def fire(k: int, i: int) -> None:
            result = await _one_stream(sessions[k], targets[k][1], body, 30.0)
            if i >= n_warm:
                results[k].append(result)

        schedule = sorted(
            (start + offsets[i] + k * interval / len(targets), k, i)
            for i in range(n_total)
            for k in range(len(targets))
        )
        for at, k, i in schedule:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - at)
            tasks.append(asyncio.create_task(fire(k, i)))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=40)
    finally:
        for task in tasks:
            task.cancel()
        for s in sessions:
            await s.close()
    out: dict[str, Any] = {"rate": rate, "arrivals": arrivals, "duration_s": duration_s}
    out["warmup_s"] = warmup_s
    out["max_start_lag_ms"] = max(lags) * 1000 if lags else None
    out["targets"] = {}
    for (name, url), rs in zip(targets, results, strict=True):
        ok = [r for r in rs if "error" not in r]
        out["targets"][name] = {
            "url": url,
            "n": len(ok),
            "errors": dict(Counter(r["error"] for r in rs if "error" in r)),
            "ttft_ms": [r["ttft"] * 1000 for r in ok],
            "total_ms": [r["total"] * 1000 for r in ok],
        }
    return out


# ---- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("closed", help="closed-loop POST load")
    c.add_argument("--url", required=True)
    c.add_argument("--body", required=True, help="request body (JSON text)")
    c.add_argument("--connections", type=int, default=32)
    c.add_argument("--warmup", type=float, default=1.0)
    c.add_argument("--duration", type=float, default=10.0)
    s = sub.add_parser("stream", help="open-loop streaming requests")
    s.add_argument("--target", action="append", required=True, help="NAME=URL (repeatable)")
    s.add_argument("--body", required=True, help="request body (JSON text, stream: true)")
    s.add_argument("--rate", type=float, default=20.0, help="requests per second per target")
    s.add_argument("--warmup", type=float, default=1.0)
    s.add_argument("--duration", type=float, default=10.0)
    s.add_argument("--arrivals", choices=["fixed", "poisson"], default="fixed")
    args = parser.parse_args(argv)
    for url in [args.url] if args.mode == "closed" else [t.partition("=")[2] for t in args.target]:
        if not is_loopback(url):
            parser.error(f"only loopback targets are allowed, got {url}")
    body = args.body.encode()
    import uvloop

    if args.mode == "closed":
        coro = closed_loop(args.url, body, args.connections, args.warmup, args.duration)
    else:
        targets = [(name, url) for name, _, url in (t.partition("=") for t in args.target)]
        coro = open_loop(targets, body, args.rate, args.warmup, args.duration, args.arrivals)
    with contextlib.suppress(KeyboardInterrupt):
        result = uvloop.run(coro)
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
        return 0
    return 130


if __name__ == "__main__":
    sys.exit(main())
