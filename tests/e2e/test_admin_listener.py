"""The admin plane on a listener of its own (`server.admin_port`): /admin/*, /ui and /metrics
answer there and 404 on the main port, which keeps /v1/* and the probes. Real gateways, sims,
sockets and `turnout serve` processes, all on loopback."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.config import load_file
from gateway.edge.context import RUNTIME
from tests.builders import (
    CHAT,
    GatewayFactory,
    SimFactory,
    chat,
    free_port,
    kill_group,
    make_config,
    start_serve,
    wait_healthy,
)
from tests.waiting import until

ADMIN_PATHS = ("/admin/targets", "/admin/traces", "/admin/config", "/ui", "/ui/login", "/metrics")


TOKEN = "admin-token-for-the-workers-test"


def config_data(sim_url: str, **server: Any) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 0, "config_poll_s": 0, **server},
        "providers": {"a": {"base_url": sim_url}},
        "routes": [{"alias": "chat", "candidates": ["m@a"]}],
    }


async def test_the_admin_plane_answers_on_its_own_listener_only(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("sim-a")
    server = {"host": "127.0.0.1", "port": 0, "admin_port": 0}
    gw = await gateway_factory(
        make_config({"a": sim.base_url}, {"chat": ["m@a"]}, extra={"server": server})
    )
    assert gw.admin_url != gw.url and gw.admin_url.startswith("http://127.0.0.1:")
    for path in ADMIN_PATHS:
        async with http.get(gw.url + path) as r:
            assert r.status == 404, path
            assert (await r.json())["error"]["type"] == "invalid_request_error"
        async with http.get(gw.admin_url + path) as r:
            assert r.status == 200, path
    async with http.post(gw.url + "/admin/reload") as r:
        assert r.status == 404
    async with http.post(gw.admin_url + "/admin/reload") as r:
        assert r.status == 409  # there: the config is not a file
    for path in ("/healthz", "/readyz", "/v1/models"):
        async with http.get(gw.url + path) as r:
            assert r.status == 200, path
        async with http.get(gw.admin_url + path) as r:
            assert r.status == 404, path  # probes and the API stay on the main port
    async with http.post(gw.url + CHAT, json=chat()) as r:
        assert r.status == 200
    async with http.post(gw.admin_url + CHAT, json=chat()) as r:
        assert r.status == 404
    async with http.get(gw.admin_url + "/metrics") as r:
        assert "turnout_requests" in await r.text()  # the main port's traffic, counted


async def test_probes_on_a_main_port_whose_admin_plane_listens_apart_say_only_alive_or_ready(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """With the admin plane on its own loopback listener and no admin token, the main port
    may face anyone (`gateway.edge.exposure` allows it): its probes told them the health
    store's state, the config file's path, the last reload error and the pid (before)."""
    sim = await sim_factory("sim-a")
    server = {"host": "127.0.0.1", "port": 0, "admin_port": 0}
    gw = await gateway_factory(
        make_config({"a": sim.base_url}, {"chat": ["m@a"]}, extra={"server": server})
    )
    async with http.get(gw.url + "/readyz") as r:
        assert r.status == 200 and await r.json() == {"status": "ready"}
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200 and await r.json() == {"status": "ok"}
    async with http.get(gw.admin_url + "/admin/config") as r:  # the details are there
        assert r.status == 200


async def test_a_reload_may_not_move_the_admin_listener(
    tmp_path: Path,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory("sim-a")
    path = tmp_path / "config.yaml"
    data = config_data(sim.base_url, admin_port=0)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    gw = await gateway_factory(load_file(path, env={}))
    moves = [{"admin_host": "127.0.0.2"}, {"admin_port": free_port()}, {"admin_port": None}]
    for move in moves:
        server = {k: v for k, v in {**data["server"], **move}.items() if v is not None}
        path.write_text(yaml.safe_dump({**data, "server": server}), encoding="utf-8")
        async with http.post(gw.admin_url + "/admin/reload") as r:
            assert r.status == 422, move
            body = await r.json()
        assert body["error"]["code"] == "config_rejected"
        assert any(p.startswith("server.admin_port: the admin listener") for p in body["problems"])
    # Still where it was: the admin plane there, 404 on the main port.
    async with http.get(gw.admin_url + "/admin/targets") as r:
        assert r.status == 200
    async with http.get(gw.url + "/admin/targets") as r:
        assert r.status == 404


async def test_a_reload_may_not_move_the_admin_plane_onto_the_main_listener_either(
    tmp_path: Path,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """Else a reload adding admin_port would pass the exposure check (a loopback admin
    listener needs no token) while the admin plane still answered on the main listener."""
    sim = await sim_factory("sim-a")
    path = tmp_path / "config.yaml"
    token = "t" * 24
    data = config_data(sim.base_url, admin_token=token, allow_anonymous=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    gw = await gateway_factory(load_file(path, env={}))
    gw.app[RUNTIME].bound_host = "0.0.0.0"  # as if bound beyond loopback (tests stay on it)
    opened = {**data, "server": {**data["server"], "admin_port": free_port()}}
    del opened["server"]["admin_token"]
    path.write_text(yaml.safe_dump(opened), encoding="utf-8")
    async with http.post(
        gw.url + "/admin/reload", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 422
    async with http.get(gw.url + "/admin/targets") as r:
        assert r.status == 401  # the token still guards it


def serve_refused(config: Path, *args: str) -> str:
    """`turnout serve` that must exit 2 before binding anything: its stderr."""
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out
    return out.stderr


def test_serve_refuses_admin_listeners_that_cannot_work(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_data("http://127.0.0.1:9/v1", admin_port=0)))
    assert "--workers needs a fixed server.admin_port" in serve_refused(
        path, "--port", str(free_port()), "--workers", "2"
    )
    port = free_port()
    path.write_text(yaml.safe_dump(config_data("http://127.0.0.1:9/v1", admin_port=port)))
    assert f"server.admin_port {port} is the main listener's port too" in serve_refused(
        path, "--port", str(port)
    )
    # An admin listener beyond loopback needs the token, even with the main one on loopback.
    path.write_text(
        yaml.safe_dump(config_data("http://127.0.0.1:9/v1", admin_port=0, admin_host="0.0.0.0"))
    )
    assert "refusing to open /admin/* and /ui on 0.0.0.0" in serve_refused(path)


def test_check_reports_the_admin_listener(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = config_data("http://127.0.0.1:9/v1", port=8080, admin_port=9090)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out
    assert (
        "admin plane (/admin/*, /ui, /metrics) on 127.0.0.1:9090, no admin_token; "
        "port 8080 serves /v1/* and the probes only"
    ) in out.stdout.splitlines()
    assert "serve would stop" not in out.stdout


async def test_workers_share_the_admin_listener(tmp_path: Path, sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim-a")
    port, admin_port = free_port(), free_port()
    cfg = tmp_path / "config.yaml"
    data = config_data(sim.base_url, admin_port=admin_port, grace_s=1.0, admin_token=TOKEN)
    cfg.write_text(yaml.safe_dump(data))
    proc = start_serve(cfg, port, "--workers", "2")
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    token = {"Authorization": f"Bearer {TOKEN}"}  # the pid is for insiders

    async def both_workers_up() -> bool:  # each one bound both listeners before serving
        seen = set()
        for _ in range(30):  # a new connection each time: the kernel picks a worker
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(url + "/healthz", headers=token) as r,
                ):
                    seen.add((await r.json())["pid"])
            except aiohttp.ClientConnectionError:
                pass
        return len(seen) == 2

    try:
        await wait_healthy(port)
        await until(both_workers_up, 10.0)
        for _ in range(10):
            async with aiohttp.ClientSession() as s:
                async with s.get(admin + "/admin/targets", headers=token) as r:
                    assert r.status == 200
                async with s.get(url + "/admin/targets", headers=token) as r:
                    assert r.status == 404  # not on the main port, even with the token
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        kill_group(proc)
