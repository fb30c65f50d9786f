"""The fleet redis_load.py measures: its config (two routes over the two sims, health.store:
redis), N gateway replicas started in this process with the Redis connections each one opened,
and the event-loop lag they run with."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway.config import Config, load_data
from gateway.edge.app import build_app
from gateway.edge.server import Server
from ops.bench.net import LOOPBACK
from ops.bench.redis_monitor import client_list

CHAT = "/v1/chat/completions"
ROUTES = {"chat-a": ["a1@sim", "a2@sim"], "chat-b": ["b1@flaky", "b2@sim"]}
FAILING = "b1@flaky"
TIMEOUTS = {"connect_s": 1.0, "headers_s": 2.0, "first_token_s": 2.0, "idle_s": 2.0, "total_s": 5.0}
TIME_LIMIT_S = 58.0


def fleet_config(sims: dict[str, str], redis_url: str, args: argparse.Namespace) -> Config:
    """`sims`: provider name -> base URL."""
    data: dict[str, Any] = {
        "server": {"host": LOOPBACK, "port": 0},
        "providers": {
            name: {"base_url": url, "api_key": f"key-{name}", "timeouts": TIMEOUTS}
            for name, url in sims.items()
        },
        "routes": [{"alias": a, "candidates": c} for a, c in ROUTES.items()],
        "health": {
            "store": "redis",
            "redis_url": redis_url,
            "sync_period_s": args.sync_period,
            "breaker": {"open_s": args.open_s},
        },
    }
    return load_data(data, env={})


@dataclass
class Replica:
    name: str
    server: Server
    addrs: set[str]


async def start_fleet(config: Config, n: int, admin: Redis, grace_s: float = 1.0) -> list[Replica]:
    """Start n replicas one by one, noting which Redis connections each one opened."""
    replicas: list[Replica] = []
    try:
        for i in range(n):
            before = set(await client_list(admin))
            server = Server(build_app(config), LOOPBACK, 0, grace_s=grace_s)
            await server.start()
            replica = Replica(f"r{i}", server, set())
            replicas.append(replica)
            deadline = time.monotonic() + 3.0
            while True:  # the tick connection is open after start(); wait for the subscriber
                now_clients = await client_list(admin)
                new = {c: f for c, f in now_clients.items() if c not in before}
                if any(f.get("sub", "0") != "0" for f in new.values()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {i}: no pub/sub connection to Redis within 3 s")
                await asyncio.sleep(0.02)
            replica.addrs = {f["addr"] for f in new.values()}
    except BaseException:
        await stop_fleet(replicas)
        raise
    return replicas


async def stop_fleet(replicas: list[Replica]) -> None:
    for r in replicas:
        with contextlib.suppress(Exception):
            await r.server.stop()


class LoopLag:
    """How late a 10 ms sleep wakes up on the gateways' loop, where the sync ticks run too."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append((loop.time() - t - 0.01) * 1000)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
