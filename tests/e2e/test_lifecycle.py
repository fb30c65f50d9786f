"""Process lifecycle: graceful SIGTERM, live config reload (API and ConfigMap-style symlink
swap), and supervised multi-worker serving. Real processes and sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import load_file
from gateway.edge.server import Server
from tests.builders import (
    CHAT,
    SimFactory,
    chat,
    free_port,
    kill_group,
    start_gateway,
    start_serve,
    wait_healthy,
)
from tests.waiting import until


def write_config(path: Path, sim_url: str, routes: dict[str, list[str]], **server: Any) -> None:
    data = {
        "server": {"host": "127.0.0.1", "port": 0, "config_poll_s": 0.2, **server},
        "providers": {"a": {"base_url": sim_url}},
        "routes": [{"alias": a, "candidates": c} for a, c in routes.items()],
    }
    path.write_text(yaml.safe_dump(data))


# -- graceful SIGTERM -------------------------------------------------------------------------


async def read_stream(s: aiohttp.ClientSession, url: str) -> bytes:
    async with s.post(url + CHAT, json=chat(stream=True)) as r:
        assert r.status == 200
        return await r.read()


async def test_sigterm_drains_streams_flips_readyz_and_exits_zero(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    # Streams of 20 words 50 ms apart last ~1 s; one of 200 words outlasts the 2 s grace.
    sim = await sim_factory("sim-a", chunk_interval_ms=50, n_words=20)
    long_sim = await sim_factory("sim-long", chunk_interval_ms=50, n_words=200)
    cfg = tmp_path / "config.yaml"
    data = {
        "server": {"host": "127.0.0.1", "grace_s": 2.0, "config_poll_s": 0},
        "providers": {"a": {"base_url": sim.base_url}, "l": {"base_url": long_sim.base_url}},
        "routes": [
            {"alias": "chat", "candidates": ["m@a"]},
            {"alias": "long", "candidates": ["m@l"]},
        ],
    }
    cfg.write_text(yaml.safe_dump(data))
    port = free_port()
    proc = start_serve(cfg, port)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(port)
        async with aiohttp.ClientSession() as keep, aiohttp.ClientSession() as s:
            async with keep.get(url + "/readyz") as r:  # a kept-alive connection, for later
                assert r.status == 200
            streams = [asyncio.create_task(read_stream(s, url)) for _ in range(3)]

            async def long_stream() -> bytes:
                async with s.post(url + CHAT, json=chat(model="long", stream=True)) as r:
                    return await r.read()

            long_task = asyncio.create_task(long_stream())
            await asyncio.sleep(0.3)  # all four are mid-stream
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            async with keep.get(url + "/readyz") as r:
                assert r.status == 503  # at once, on the connection it already had
                assert (await r.json())["status"] == "draining"
            with pytest.raises(aiohttp.ClientConnectionError):  # no new connections
                async with aiohttp.ClientSession() as fresh, fresh.get(url + "/healthz"):
                    pass
            bodies = await asyncio.gather(*streams)
            for body in bodies:  # within the grace period: complete
                assert body.rstrip().endswith(b"data: [DONE]")
                assert b"event: error" not in body
            long_body = await long_task
        assert b"event: error" in long_body and b"shutting_down" in long_body
        assert b"[DONE]" not in long_body
        code = await asyncio.to_thread(proc.wait, 10)
        elapsed = time.monotonic() - t0
        assert code == 0
        assert elapsed < 2.0 + 2.5  # grace + a small margin
    finally:
        kill_group(proc)


# -- live reload --------------------------------------------------------------------------------


async def started(config_path: Path) -> Server:
    return await start_gateway(load_file(config_path))


async def test_admin_reload_applies_valid_and_rejects_broken_configs(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    sim = await sim_factory("sim-a")
    cfg = tmp_path / "config.yaml"
    write_config(cfg, sim.base_url, {"chat": ["m@a"]}, config_poll_s=0)
    server = await started(cfg)
    try:
        async with aiohttp.ClientSession() as s:
            write_config(cfg, sim.base_url, {"chat": ["m@a"], "chat2": ["m2@a"]}, config_poll_s=0)
            async with s.post(server.url + "/admin/reload") as r:
                assert r.status == 200
                body = await r.json()
                assert body["status"] == "reloaded" and body["routes"] == ["chat", "chat2"]
            async with s.post(server.url + CHAT, json=chat(model="chat2", stream=False)) as r:
                assert r.status == 200 and r.headers["x-turnout-target"] == "m2@a"
            for broken, expect in (
                ("routes: [\n  - alias: chat\n", "YAML syntax error"),
                (cfg.read_text().replace("m2@a", "m2@nowhere"), "unknown target 'm2@nowhere'"),
            ):
                cfg.write_text(broken)
                async with s.post(server.url + "/admin/reload") as r:
                    assert r.status == 422
                    problems = (await r.json())["problems"]
                    assert any(expect in p for p in problems), problems
                async with s.post(server.url + CHAT, json=chat(model="chat2", stream=False)) as r:
                    assert r.status == 200  # the old config still serves
            async with s.get(server.url + "/readyz") as r:
                reloads = (await r.json())["reloads"]
            assert reloads["ok"] == 1 and reloads["failed"] == 2 and reloads["last_error"]
    finally:
        await server.stop()


async def test_configmap_symlink_swap_triggers_a_reload(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    """Kubernetes updates a ConfigMap volume by swapping the `..data` symlink atomically."""
    sim = await sim_factory("sim-a")
    volume = tmp_path / "volume"
    (volume / "..v1").mkdir(parents=True)
    write_config(volume / "..v1" / "config.yaml", sim.base_url, {"chat": ["m@a"]})
    (volume / "..data").symlink_to("..v1")
    (volume / "config.yaml").symlink_to("..data/config.yaml")
    server = await started(volume / "config.yaml")
    try:
        async with aiohttp.ClientSession() as s:

            async def route_exists(model: str) -> bool:
                async with s.post(server.url + CHAT, json=chat(model=model, stream=False)) as r:
                    return r.status == 200

            assert not await route_exists("fresh")
            (volume / "..v2").mkdir()
            write_config(volume / "..v2" / "config.yaml", sim.base_url, {"fresh": ["m9@a"]})
            (volume / "..data_tmp").symlink_to("..v2")
            os.replace(volume / "..data_tmp", volume / "..data")  # the atomic swap
            await until(lambda: route_exists("fresh"), 3.0)
            assert not await route_exists("chat")  # the old route is gone
    finally:
        await server.stop()


async def test_reload_removing_a_target_mid_traffic_fails_no_request(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    slow = await sim_factory("sim-a", chunk_interval_ms=30, n_words=15)
    cfg = tmp_path / "config.yaml"
    write_config(cfg, slow.base_url, {"chat": ["m@a", "m2@a"]}, config_poll_s=0)
    server = await started(cfg)
    try:
        async with aiohttp.ClientSession() as s:
            stop = asyncio.Event()
            results: list[bytes] = []

            async def traffic() -> None:
                while not stop.is_set():
                    results.append(await read_stream(s, server.url))

            workers = [asyncio.create_task(traffic()) for _ in range(4)]
            await asyncio.sleep(0.3)
            write_config(cfg, slow.base_url, {"chat": ["m2@a"]}, config_poll_s=0)
            async with s.post(server.url + "/admin/reload") as r:
                assert r.status == 200
            await asyncio.sleep(0.8)
            stop.set()
            await asyncio.gather(*workers)
        assert len(results) >= 8
        assert all(b.rstrip().endswith(b"data: [DONE]") for b in results)
        models = {a["model"] for a in slow.state.attempts()}
        assert models == {"m", "m2"}  # the removed target served until the swap, then m2
    finally:
        await server.stop()


# -- workers ------------------------------------------------------------------------------------


async def test_workers_share_a_port_and_a_killed_one_is_restarted(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    sim = await sim_factory("sim-a")
    cfg = tmp_path / "config.yaml"
    write_config(cfg, sim.base_url, {"chat": ["m@a"]}, config_poll_s=0, grace_s=1.0)
    port = free_port()
    proc = start_serve(cfg, port, "--workers", "2")
    url = f"http://127.0.0.1:{port}"

    async def pids(n: int) -> set[int]:
        seen: set[int] = set()
        for _ in range(n):  # a new connection each time: the kernel picks a worker
            try:
                async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
                    seen.add((await r.json())["pid"])
            except aiohttp.ClientConnectionError:
                pass  # a connection queued on a worker as it died or started: counted as lost
        return seen

    try:
        await wait_healthy(port)
        await asyncio.sleep(0.5)  # both workers up
        first = await pids(40)
        assert len(first) == 2  # requests spread over both workers
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        async def victim_dead() -> bool:  # gone, or a zombie its supervisor has yet to reap
            try:
                stat = await asyncio.to_thread(Path(f"/proc/{victim}/stat").read_text)
                state = stat.split(") ", 1)[1][0]
            except (FileNotFoundError, IndexError):
                return True
            return state in "ZX"

        # Connections that reached the victim before it died are the only ones it takes down.
        await until(victim_dead, 5.0)
        ok = reset = 0
        for _ in range(20):  # the other worker keeps serving, on new connections
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.post(url + CHAT, json=chat(stream=False)) as r,
                ):
                    ok += r.status == 200
            except aiohttp.ClientConnectionError:
                # Linux resets connections still queued on a SO_REUSEPORT socket that closes;
                # one may land there in the instant the victim dies.
                reset += 1
        assert ok >= 19 and ok + reset == 20

        async def restarted() -> bool:
            now = await pids(20)
            return len(now) == 2 and victim not in now

        await until(restarted, 10.0)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        kill_group(proc)
