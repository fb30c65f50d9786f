"""Shared fixtures: real simulated providers and a real gateway, on loopback sockets."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import build_app
from gateway.config import Config, load_data
from gateway.server import Server
from gateway.sim.server import SimServer
from tests.redisproc import RedisProcess

FAST_TIMEOUTS = {"connect_s": 1.0, "headers_s": 1.0, "first_token_s": 1.0, "idle_s": 1.0}


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_config(
    providers: dict[str, str],
    routes: dict[str, list[str]],
    *,
    timeouts: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Config:
    """A config with one provider per `name -> base_url` and routes `alias -> [target ids]`.

    Target ids are `model@provider`, so no `targets:` section is needed.
    """
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {
            name: {"base_url": url, "api_key": f"key-{name}", "timeouts": timeouts or FAST_TIMEOUTS}
            for name, url in providers.items()
        },
        "routes": [{"alias": a, "candidates": c} for a, c in routes.items()],
    }
    if extra:
        data.update(extra)
    return load_data(data, env={})


SimFactory = Callable[..., Awaitable[SimServer]]
GatewayFactory = Callable[[Config], Awaitable[Server]]


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    """`await sim_factory("sim-a", **SimServer kwargs)` -> a started sim, closed after the test."""
    started: list[SimServer] = []

    async def make(name: str = "sim", **kwargs: Any) -> SimServer:
        sim = SimServer(name, **kwargs)
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.close()


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """`await gateway_factory(config)` -> a started gateway Server (`.url`), stopped after."""
    started: list[Server] = []

    async def make(config: Config) -> Server:
        server = Server(build_app(config), "127.0.0.1", 0, grace_s=1.0)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def three_sims(sim_factory: SimFactory) -> list[SimServer]:
    return [await sim_factory(n) for n in ("sim-a", "sim-b", "sim-c")]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A private Redis server process on an ephemeral port, for this test only."""
    server = RedisProcess(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
