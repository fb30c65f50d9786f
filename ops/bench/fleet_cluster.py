"""Phase 6, Redis Cluster (3 local masters, no replicas: `ClusterProcess`).

- propagation as in phase 1 (the store is asked for pub/sub; whether it uses it on a cluster
  is its business: the times show what happens);
- cost per replica at 4 targets, 50 and 500 req/s, as in phase 4, INFO read on every master and
  summed;
- one master SIGKILLed under traffic as in phase 3 (down `down_s`, then started again from its
  nodes.conf, empty, and the cluster waited for `cluster_state:ok`): failures, leaks, degraded
  and recovered, and whether a new replica reads the broken target OPEN.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ops.bench.fleet_common import admin_client
from ops.bench.fleet_cost import CostResult, cost_point
from ops.bench.fleet_faults import Fault, FaultResult, episode
from ops.bench.fleet_propagation import PropagationResult, propagation
from ops.bench.redisproc import ClusterProcess


@dataclass(frozen=True, slots=True)
class ClusterResult:
    propagation: PropagationResult
    costs: list[CostResult]
    node_kill: FaultResult


def _kill_node(cluster: ClusterProcess, index: int, down_s: float) -> Fault:
    async def run() -> None:
        node = cluster.nodes[index]
        node.kill()
        await asyncio.sleep(down_s)
        await asyncio.to_thread(node.start)
        await asyncio.to_thread(cluster.wait_ok)

    return run


async def cluster_phase(
    workdir: Path, *, trips: int, seconds: float, down_s: float
) -> ClusterResult:
    cluster = await asyncio.to_thread(ClusterProcess(workdir).start)
    admins = [admin_client(n.port) for n in cluster.nodes]
    try:
        prop = await propagation(cluster.url, trips=trips, mode="cluster")
        costs = [
            await cost_point(
                cluster.url, admins, targets=4, rate=rate, seconds=seconds, where="cluster"
            )
            for rate in (50.0, 500.0)
        ]
        for a in admins:
            await a.aclose()
        kill = await episode(
            f"cluster: SIGKILL 1 of 3 masters, down {down_s:g} s",
            cluster.url,
            _kill_node(cluster, 1, down_s),
            recover_timeout_s=15.0,
        )
    finally:
        cluster.stop()
    return ClusterResult(prop, costs, kill)
