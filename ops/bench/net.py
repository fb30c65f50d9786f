"""Loopback networking for the benches: free ports, a TCP/HTTP probe, and a small HTTP client
that never goes through a proxy from the environment (every request here goes to 127.0.0.1)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import urllib.request

LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

# No proxy from the environment: these requests go to loopback only.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def is_loopback(url: str) -> bool:
    """Whether `url` (http://host:port/...) names a loopback host."""
    host = url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS


def port_open(port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout):
        return True
    return False


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def send_json(
    url: str, body: str, method: str = "POST", timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one JSON request to a loopback URL."""
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method=method
    )
    with _OPENER.open(req, timeout=timeout) as resp:  # loopback only
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
