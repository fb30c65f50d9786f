"""Secure by default: what the gateway refuses to open beyond loopback unless told to.

On a loopback address (the sidecar case) everything works as configured. Bound to any other
address, `/v1/*` needs client keys (`clients:`) or an explicit `server.allow_anonymous: true`
- else anyone who can reach the port spends the providers' keys - and `/admin/*` and `/ui`
need `server.admin_token` - else anyone can reload the config and read the traces.
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


def exposure_problems(config: Config, host: str) -> list[str]:
    """Why serving `config` on `host` would open what it should not (empty: fine)."""
    if is_loopback(host):
        return []
    problems = []
    server = config.server
    if not config.clients and not server.allow_anonymous:
        problems.append(
            f"refusing to serve /v1/* on {host} to anyone who can reach it: configure client "
            "keys (`clients:`, see `turnout key new`) or set server.allow_anonymous: true"
        )
    if not server.admin_token:
        problems.append(
            f"refusing to open /admin/* and /ui on {host} without server.admin_token "
            "(e.g. admin_token: ${TURNOUT_ADMIN_TOKEN})"
        )
    return problems
