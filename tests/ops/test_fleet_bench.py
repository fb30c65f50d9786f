"""The fleet bench's phase functions (`ops/bench/fleet_*.py`) with tiny parameters against a
real Redis: they measure every peer, and what they report is in range."""

from __future__ import annotations

from ops.bench.fleet_common import admin_client
from ops.bench.fleet_cost import cost_point
from ops.bench.fleet_probes import probes
from ops.bench.fleet_propagation import propagation
from tests.builders import RedisProcess


async def test_propagation_times_every_peer(redis_server: RedisProcess) -> None:
    for pubsub in (True, False):
        r = await propagation(redis_server.url, trips=3, pubsub=pubsub)
        assert r.missed == 0
        assert r.samples == 3 * 2  # every trip, both peers
        assert r.p50_ms is not None and r.max_ms is not None
        assert 0 < r.p50_ms <= r.max_ms < 2000


async def test_probes_counts_a_recovery(redis_server: RedisProcess) -> None:
    r = await probes(redis_server.url, replicas=3, recoveries=1)
    assert r.not_closed == 0
    (rec,) = r.recoveries
    assert rec.probes >= r.k  # K successes are needed to close
    assert 1 <= rec.probers <= 3
    assert rec.first_probe_to_closed_ms is not None and rec.first_probe_to_closed_ms > 0


async def test_cost_counts_commands_per_replica(redis_server: RedisProcess) -> None:
    admin = admin_client(redis_server.port)
    try:
        r = await cost_point(redis_server.url, [admin], targets=4, rate=50.0, seconds=1.0)
    finally:
        await admin.aclose()
    assert r.cmd_s_per_replica > 0
    assert r.by_command and "info" not in r.by_command and "config" not in r.by_command
    assert r.redis_cores >= 0
    assert r.in_bytes_s > 0 and r.out_bytes_s > 0
