"""Secure by default (gateway/edge/exposure.py, issue 16): what serving a config on an address
would open, decided before anything is bound."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_data
from gateway.edge.exposure import admin_host, bind_problems, exposure_problems, is_loopback

BASE = {
    "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
    "routes": [{"alias": "chat", "candidates": ["m@p"]}],
}
KEYS = {"clients": {"app": {"key_sha256": "0" * 64}}}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_is_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "gateway.internal", ""])
def test_anything_else_is_not(host: str) -> None:
    assert not is_loopback(host)


def test_on_loopback_anything_goes() -> None:
    assert exposure_problems(load_data(BASE, env={}), "127.0.0.1") == []


def test_beyond_loopback_it_needs_keys_or_consent_and_an_admin_token() -> None:
    open_config = load_data(BASE, env={})
    problems = exposure_problems(open_config, "0.0.0.0")
    assert len(problems) == 2
    assert "configure client keys" in problems[0] and "allow_anonymous" in problems[0]
    assert "server.admin_token" in problems[1]
    token = {"server": {"admin_token": "t" * 24}}
    assert len(exposure_problems(load_data({**BASE, **token}, env={}), "0.0.0.0")) == 1
    keyed = load_data({**BASE, **token, **KEYS}, env={})
    assert exposure_problems(keyed, "0.0.0.0") == []
    consent = {"server": {"admin_token": "t" * 24, "allow_anonymous": True}}
    assert exposure_problems(load_data({**BASE, **consent}, env={}), "10.1.2.3") == []


def test_the_admin_plane_is_on_loopback_by_default() -> None:
    default = load_data(BASE, env={})
    assert is_loopback(admin_host(default, default.server.host))  # the main listener's
    own = load_data({**BASE, "server": {"host": "0.0.0.0", "admin_port": 9090}}, env={})
    assert own.server.admin_listener == ("127.0.0.1", 9090)
    assert admin_host(own, "0.0.0.0") == "127.0.0.1"


def test_an_admin_listener_on_loopback_needs_no_token_beyond_it() -> None:
    """Before: beyond loopback the admin token was required whatever the admin plane's address
    (it had none of its own)."""
    consent = {"allow_anonymous": True}
    own = load_data({**BASE, "server": {**consent, "admin_port": 9090}}, env={})
    assert exposure_problems(own, "0.0.0.0") == []
    shared = load_data({**BASE, "server": consent}, env={})
    assert len(exposure_problems(shared, "0.0.0.0")) == 1


def test_an_admin_listener_beyond_loopback_needs_the_token() -> None:
    server = {"admin_port": 9090, "admin_host": "0.0.0.0"}
    wide = load_data({**BASE, "server": server}, env={})
    [problem] = exposure_problems(wide, "127.0.0.1")
    assert "on 0.0.0.0 without server.admin_token" in problem and "admin_port" in problem
    closed = load_data({**BASE, "server": {**server, "admin_token": "t" * 24}}, env={})
    assert exposure_problems(closed, "127.0.0.1") == []


def test_admin_listeners_that_cannot_be_opened() -> None:
    def problems(admin_port: int | None, port: int, workers: int) -> list[str]:
        config = load_data({**BASE, "server": {"admin_port": admin_port}}, env={})
        return bind_problems(config, port, workers)

    assert problems(None, 8080, 4) == []
    assert problems(9090, 8080, 4) == []
    assert problems(0, 0, 1) == []  # each listener on a free port of its own
    assert "port of its own" in problems(8080, 8080, 1)[0]
    assert "--workers needs a fixed server.admin_port" in problems(0, 8080, 2)[0]


def test_serve_refuses_to_start_open_beyond_loopback(tmp_path: Path) -> None:
    path = tmp_path / "open.yaml"
    path.write_text(
        'providers: {p: {base_url: "http://127.0.0.1:9/v1"}}\n'
        "routes: [{alias: chat, candidates: [m@p]}]\n",
        encoding="utf-8",
    )
    # It exits before binding anything: no socket is opened beyond loopback by this test.
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "-c", str(path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out
    assert "refusing to serve /v1/* on 0.0.0.0" in out.stderr
    assert "refusing to open /admin/* and /ui on 0.0.0.0" in out.stderr
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0 and "warning: serve would stop" not in checked.stdout
