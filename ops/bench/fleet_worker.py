"""A worker process of the load model (phase 5): N FleetStore replicas in one event loop.

    python -m ops.bench.fleet_worker URL N TARGET_PREFIX TARGETS RATE SYNC_PERIOD_S ID_PREFIX

Starts N replicas tracking TARGETS targets named TARGET_PREFIX0..., sends synthetic successful
outcomes at RATE requests/s over them all, prints `ready` once every store has started, runs
until a line (or EOF) arrives on stdin, then prints one JSON line: this process's CPU seconds
and event-loop lag p99 over the run, and how many stores reported degraded (polled every
0.1 s) at some point and at the end. It is a separate process so that the parent, which reads
Redis, stays idle, and so that 300 replicas can be spread over two cores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

from ops.bench.fleet_common import LagProbe, Traffic, close_fleet, health, start_fleet


async def main(argv: list[str]) -> int:
    url, n, tprefix, ntargets, rate, sync, prefix = argv
    tids = [f"{tprefix}{i}" for i in range(int(ntargets))]
    stores = await start_fleet(
        url, int(n), health(), tids, sync_period_s=float(sync), prefix=prefix
    )
    lag = LagProbe().start()
    traffic = Traffic(stores, tids, [], float(rate)).start() if float(rate) > 0 else None
    ever: set[str] = set()

    async def watch() -> None:
        while True:
            ever.update(s.replica_id for s in stores if s.status().degraded)
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    cpu = time.process_time() - cpu0
    took = time.perf_counter() - t0
    watcher.cancel()
    if traffic is not None:
        await traffic.stop()
    await lag.stop()
    degraded_now = sum(1 for s in stores if s.status().degraded)
    await close_fleet(stores)
    doc = {
        "cpu_cores": cpu / took if took > 0 else 0.0,
        "lag_p99_ms": lag.p99_ms(),
        "degraded_ever": len(ever),
        "degraded_end": degraded_now,
        "requests": traffic.tally.requests if traffic is not None else 0,
    }
    print(json.dumps(doc), flush=True)
    return 0


if __name__ == "__main__":
    logging.getLogger("turnout").setLevel(logging.ERROR)
    sys.exit(asyncio.run(main(sys.argv[1:])))
