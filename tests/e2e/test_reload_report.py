"""A reload says what changed, key by key, each applied live or waiting for a restart: in the
answer of `POST /admin/reload` and in `GET /admin/config`. Real gateway, sim and sockets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.config import load_file
from tests.builders import GatewayFactory, SimFactory


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def test_reload_lists_changed_keys_and_applies_the_live_ones(
    tmp_path: Path,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory("sim-a")
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {"a": {"base_url": sim.base_url}},
        "routes": [{"alias": "r", "candidates": ["m@a"], "policy": "priority"}],
    }
    path = _write(tmp_path / "c.yaml", data)
    gw = await gateway_factory(load_file(path, env={}))

    new = copy.deepcopy(data)
    new["server"]["port"] = 1  # needs a restart
    new["server"]["admin_token"] = "s3cret-token"  # applies at once
    new["resilience"] = {"budget_window_s": 3}
    new["telemetry"] = {"sample_ratio": 0.5}
    new["routes"][0]["policy"] = {"name": "least_latency", "params": {"choices": 3}}
    _write(path, new)
    async with http.post(gw.url + "/admin/reload") as r:
        assert r.status == 200
        body = await r.json()
    expected = [
        {"key": "server.port", "applies": "restart"},
        {"key": "server.admin_token", "applies": "applied"},
        {"key": "resilience.budget_window_s", "applies": "applied"},
        {"key": "telemetry.sample_ratio", "applies": "restart"},
        {"key": "routes[0].policy", "applies": "applied"},
    ]
    assert body["status"] == "reloaded" and body["changed"] is True
    assert body["changes"] == expected

    # The token applies live: the admin surface now needs it.
    async with http.get(gw.url + "/admin/config") as r:
        assert r.status == 401
    auth = {"Authorization": "Bearer s3cret-token"}
    async with http.get(gw.url + "/admin/config", headers=auth) as r:
        text = await r.text()
        view = await r.json()
    assert "s3cret" not in text  # named in the report, never shown
    assert view["last_reload"]["changes"] == expected
    config = view["config"]
    assert config["server"]["admin_token"] == "<redacted>"
    assert config["server"]["port"] == 1  # the file's value; the socket keeps its port
    assert config["resilience"]["budget_window_s"] == 3
    assert config["routes"][0]["policy"] == "least_latency"

    # Reloading the same file again: nothing changed.
    async with http.post(gw.url + "/admin/reload", headers=auth) as r:
        body = await r.json()
    assert body["changed"] is False and body["changes"] == []
