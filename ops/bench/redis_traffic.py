"""redis_load.py's traffic: a child process (`python -m ops.bench.redis_traffic`, started by
`Traffic`) that runs the two sims and the open-loop load generator, driven by one JSON line on
stdin per command ("fault", "load") and answering with one JSON line on stdout. It lives apart
from the gateways because one event loop cannot carry client + gateway + sim at 500 req/s."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from gateway.edge.server import run
from gateway.sim.faults import Fault
from gateway.sim.server import SimServer
from ops.bench.net import LOOPBACK
from ops.bench.procs import REPO
from ops.bench.redis_fleet import CHAT, ROUTES, TIME_LIMIT_S
from ops.bench.stats import percentile


async def open_loop(
    session: aiohttp.ClientSession, urls: list[str], rate: float, duration_s: float
) -> dict[str, Any]:
    """Request i at start + i/rate, to replica i % N and route (i // N) % R; never waits for
    answers before sending the next one (open loop)."""
    routes = list(ROUTES)
    total = round(rate * duration_s)
    bodies = {
        r: orjson.dumps({"model": r, "messages": [{"role": "user", "content": "hi"}]})
        for r in routes
    }
    headers = {"Content-Type": "application/json"}
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    answered_by: Counter[str] = Counter()
    counts = Counter[str]()
    max_lag = 0.0

    async def one(url: str, body: bytes) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    counts["ok"] += 1
                    latencies.append((time.perf_counter() - t0) * 1000)
                    answered_by[resp.headers.get("x-turnout-target", "?")] += 1
                    if resp.headers.get("x-turnout-attempts", "1") != "1":
                        counts["failovers"] += 1
                else:
                    failures[f"HTTP {resp.status}"] += 1
        except Exception as exc:
            failures[type(exc).__name__] += 1

    start = loop.time()
    for i in range(total):
        due = start + i / rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            max_lag = max(max_lag, now - due)
        url = urls[i % len(urls)] + CHAT
        body = bodies[routes[(i // len(urls)) % len(routes)]]
        task = asyncio.create_task(one(url, body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        counts["sent"] += 1
    send_window_s = max(loop.time() - start, total / rate)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=10.0)
        for t in pending:
            t.cancel()
            failures["still pending after 10 s"] += 1
    return {
        "sent": counts["sent"],
        "ok": counts["ok"],
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "failovers": counts["failovers"],
        "answered_by": dict(sorted(answered_by.items())),
        "achieved_rps": counts["ok"] / send_window_s,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=None),
        },
        "max_send_lag_ms": max_lag * 1000,
        "wall_s": loop.time() - start,
    }


async def traffic_child() -> None:
    """The child process: two sims and the load generator, driven by JSON lines on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    sims = {"sim": SimServer("sim"), "flaky": SimServer("flaky")}
    try:
        for s in sims.values():
            await s.start(LOOPBACK, 0)
        reply({name: s.base_url for name, s in sims.items()})
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=8)
        async with (
            asyncio.timeout(TIME_LIMIT_S + 5),
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        ):
            while line := await reader.readline():
                msg = json.loads(line)
                if msg["op"] == "fault":  # the fault of the dedicated sim, in-process here
                    sims["flaky"].state.set_fault(Fault.from_json(msg["fault"]))
                    reply({"ok": True})
                elif msg["op"] == "load":
                    reply(await open_loop(session, msg["urls"], msg["rate"], msg["duration"]))
    finally:
        for s in sims.values():
            with contextlib.suppress(Exception):
                await s.close()


class Traffic:
    """The parent's handle on the traffic child: one JSON line out, one back."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.sims: dict[str, str] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ops.bench.redis_traffic",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        self.sims = await self._read(15.0)

    async def _read(self, timeout_s: float) -> Any:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"traffic child exited (rc={await self.proc.wait()})")
        return json.loads(line)

    async def call(self, msg: dict[str, Any], timeout_s: float = 5.0) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._read(timeout_s)

    async def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            async with asyncio.timeout(3):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description="redis_load.py's traffic child: JSON lines on stdin"
    ).parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run(traffic_child())
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
