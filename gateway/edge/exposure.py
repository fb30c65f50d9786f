"""Secure by default: what the gateway refuses to open beyond loopback unless told to, and
where each plane listens.

Two planes: `/v1/*` with the probes (`/healthz`, `/readyz`) on the main listener
(`server.host`/`port`), and the admin plane (`/admin/*`, `/ui`, `/metrics`) on the main
listener too, or on its own (`server.admin_port`, on `server.admin_host`, loopback by default).

On a loopback address (the sidecar case) everything works as configured. Bound to any other
address, `/v1/*` needs client keys (`clients:`) or an explicit `server.allow_anonymous: true`
- else anyone who can reach the port spends the providers' keys - and the admin plane needs
`server.admin_token` - else anyone can reload the config and read the traces - unless it
listens on loopback by itself.
"""

from __future__ import annotations

import ipaddress

from gateway.config.model import Config


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, or a wildcard such as 0.0.0.0 / ::: reachable from outside


def admin_host(config: Config, host: str) -> str:
    """Where the admin plane listens when the main listener binds `host`."""
    listener = config.server.admin_listener
    return host if listener is None else listener[0]


def exposure_problems(config: Config, host: str) -> list[str]:
    """Why serving `config` with the main listener on `host` would open what it should not
    (empty: fine)."""
    problems = []
    server = config.server
    if not is_loopback(host) and not config.clients and not server.allow_anonymous:
        problems.append(
            f"refusing to serve /v1/* on {host} to anyone who can reach it: configure client "
            "keys (`clients:`, see `turnout key new`) or set server.allow_anonymous: true"
        )
    admin = admin_host(config, host)
    if not is_loopback(admin) and not server.admin_token:
        problems.append(
            f"refusing to open /admin/* and /ui on {admin} without server.admin_token "
            "(e.g. admin_token: ${TURNOUT_ADMIN_TOKEN}), or give them a listener of their own "
            "on loopback (server.admin_port, admin_host: 127.0.0.1)"
        )
    return problems


def bind_problems(config: Config, port: int, workers: int) -> list[str]:
    """Why the listeners could not be opened as configured, with the main one on `port` and
    `workers` processes sharing them (empty: fine)."""
    listener = config.server.admin_listener
    if listener is None:
        return []
    if listener[1] == 0 and workers > 1:
        return [
            "--workers needs a fixed server.admin_port: the workers share it (0 would give "
            "each worker a port of its own)"
        ]
    if listener[1] != 0 and listener[1] == port:
        return [
            f"server.admin_port {port} is the main listener's port too: give the admin plane "
            "a port of its own"
        ]
    return []


def describe_admin(config: Config, port: int) -> str | None:
    """Where the admin plane listens, in a line for `turnout check`; None: on the main listener
    like everything else."""
    listener = config.server.admin_listener
    if listener is None:
        return None
    closed = "behind server.admin_token" if config.server.admin_token else "no admin_token"
    return (
        f"admin plane (/admin/*, /ui, /metrics) on {listener[0]}:{listener[1]}, {closed}; "
        f"port {port} serves /v1/* and the probes only"
    )
