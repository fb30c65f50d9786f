"""The fleet health store bench (issue 18): FleetStore replicas in process, real Redis on
loopback, measured through the store's public API and Redis's INFO only.

    python -m ops.bench.fleet                    # every phase, a few minutes
    python -m ops.bench.fleet --quick            # shorter and smaller, about 1.5 minutes
    python -m ops.bench.fleet --only propagation,probes --json out.json

Phases (each module's docstring says what it measures and how):
  propagation  fleet_propagation  trip on one replica -> OPEN on every peer, pub/sub on and off
  probes       fleet_probes       probes per recovery, 3 and 30 replicas (goal: K=2 by one)
  faults       fleet_faults       SIGKILL, SIGSTOP, restart empty, DEBUG SLEEP under traffic
  cost         fleet_cost         Redis commands/CPU/bytes per replica, 4/40 targets, 50/500 req/s
  model        fleet_model        3/30/300 replicas (quick: 100), fit c + a*N, at 1,000
  cluster      fleet_cluster      the same on a 3-master Redis Cluster, and a master killed
  sentinel     fleet_sentinel     a Sentinel failover under traffic: follow, keep trips, leaks

Every number printed comes from this run. Exit codes: 0 measured (a measured regression is
reported, not an exit code), 1 a phase failed with an exception, 2 the bench could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ops.bench import (
    fleet_cluster,
    fleet_cost,
    fleet_faults,
    fleet_model,
    fleet_probes,
    fleet_propagation,
    fleet_sentinel,
)
from ops.bench.fleet_common import admin_client
from ops.bench.redisproc import RedisProcess, redis_binary, version_options
from ops.bench.report import commit, write_json

PHASES = ("propagation", "probes", "faults", "cost", "model", "cluster", "sentinel")
Phase = Callable[[Path, bool], Awaitable[tuple[Any, str]]]


async def _on_redis(workdir: Path, body: Callable[[RedisProcess], Awaitable[Any]]) -> Any:
    server = RedisProcess(workdir / "redis").start()
    try:
        return await body(server)
    finally:
        server.stop()


async def run_propagation(workdir: Path, quick: bool) -> tuple[Any, str]:
    trips = 10 if quick else 30

    async def body(r: RedisProcess) -> list[fleet_propagation.PropagationResult]:
        return [
            await fleet_propagation.propagation(r.url, trips=trips, pubsub=p) for p in (True, False)
        ]

    res = await _on_redis(workdir, body)
    return res, fleet_propagation.render(res)


async def run_probes(workdir: Path, quick: bool) -> tuple[Any, str]:
    m = 3 if quick else 10

    async def body(r: RedisProcess) -> list[fleet_probes.ProbesResult]:
        return [await fleet_probes.probes(r.url, replicas=n, recoveries=m) for n in (3, 30)]

    res = await _on_redis(workdir, body)
    return res, fleet_probes.render(res)


async def run_faults(workdir: Path, quick: bool) -> tuple[Any, str]:
    async def body(r: RedisProcess) -> list[fleet_faults.FaultResult]:
        return await fleet_faults.faults(r, quick=quick)

    res = await _on_redis(workdir, body)
    return res, fleet_faults.render(res)


async def run_cost(workdir: Path, quick: bool) -> tuple[Any, str]:
    async def body(r: RedisProcess) -> list[fleet_cost.CostResult]:
        admin = admin_client(r.port)
        try:
            return await fleet_cost.costs(r.url, [admin], seconds=2.0 if quick else 10.0)
        finally:
            await admin.aclose()

    res = await _on_redis(workdir, body)
    return res, fleet_cost.render(res)


async def run_model(workdir: Path, quick: bool) -> tuple[Any, str]:
    counts = (3, 30, 100) if quick else (3, 30, 300)

    async def body(r: RedisProcess) -> fleet_model.LoadModelResult:
        admin = admin_client(r.port)
        try:
            return await fleet_model.load_model(
                r.url, admin, counts=counts, seconds=2.0 if quick else 6.0
            )
        finally:
            await admin.aclose()

    res = await _on_redis(workdir, body)
    return res, fleet_model.render(res)


async def run_cluster(workdir: Path, quick: bool) -> tuple[Any, str]:
    res = await fleet_cluster.cluster_phase(
        workdir / "cluster",
        trips=5 if quick else 10,
        seconds=2.0 if quick else 5.0,
        down_s=2.0 if quick else 5.0,
    )
    text = "\n\n".join(
        [
            fleet_propagation.render([res.propagation]),
            fleet_cost.render(res.costs, "cluster: cost per replica"),
            fleet_faults.render([res.node_kill], "cluster: a master killed under traffic"),
        ]
    )
    return res, text


async def run_sentinel(workdir: Path, quick: bool) -> tuple[Any, str]:
    res = await fleet_sentinel.sentinel_phase(
        workdir / "sentinel", follow_timeout_s=15.0 if quick else 30.0
    )
    return res, fleet_sentinel.render(res)


RUNNERS: dict[str, Phase] = {
    "propagation": run_propagation,
    "probes": run_probes,
    "faults": run_faults,
    "cost": run_cost,
    "model": run_model,
    "cluster": run_cluster,
    "sentinel": run_sentinel,
}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


async def main_async(phases: list[str], quick: bool, json_path: str | None) -> int:
    doc: dict[str, Any] = {"quick": quick, "commit": commit(), "phases": {}, "errors": {}}
    try:
        binary = redis_binary()
        doc["redis_binary"] = binary
        doc["redis_options"] = list(version_options(binary))
    except Exception as exc:
        print(f"cannot run: no redis-server ({exc})", file=sys.stderr)
        return 2
    print(f"fleet bench — commit {doc['commit']}, redis {binary}, quick={quick}\n")
    failed = False
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        for name in phases:
            t0 = time.perf_counter()
            try:
                result, text = await RUNNERS[name](Path(tmp) / name, quick)
            except Exception as exc:
                failed = True
                doc["errors"][name] = f"{type(exc).__name__}: {exc}"
                print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", flush=True)
                traceback.print_exc()
                continue
            took = time.perf_counter() - t0
            doc["phases"][name] = {"seconds": round(took, 1), "result": _plain(result)}
            print(f"{text}\n[{name}: {took:.0f} s]\n", flush=True)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    print(f"total {doc['seconds']:.0f} s")
    if json_path:
        write_json(json_path, doc)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m ops.bench.fleet", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="shorter and smaller (~1.5 min)")
    ap.add_argument("--json", metavar="PATH", help="also write every number as JSON")
    ap.add_argument(
        "--only", metavar="PHASES", help=f"comma-separated subset of {','.join(PHASES)}"
    )
    args = ap.parse_args(argv)
    phases = list(PHASES)
    if args.only:
        phases = [p.strip() for p in args.only.split(",") if p.strip()]
        unknown = [p for p in phases if p not in RUNNERS]
        if unknown:
            ap.error(f"unknown phase(s) {','.join(unknown)}; known: {','.join(PHASES)}")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("turnout").setLevel(logging.ERROR)  # degraded warnings are measured
    try:
        return asyncio.run(main_async(phases, args.quick, args.json))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
