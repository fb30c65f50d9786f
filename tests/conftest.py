"""Shared fixtures for every folder: real simulated providers and a real gateway, on loopback
sockets, and a private Redis server. Helpers that are not fixtures live in tests/builders.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import Config
from gateway.edge.server import Server
from gateway.sim.server import SimServer
from tests.builders import GatewayFactory, RedisProcess, SimFactory, start_gateway, start_sim


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    """`await sim_factory("sim-a", **SimServer kwargs)` -> a started sim, closed after the test."""
    started: list[SimServer] = []

    async def make(name: str = "sim", **kwargs: Any) -> SimServer:
        sim = await start_sim(name, **kwargs)
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
        server = await start_gateway(config)
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
