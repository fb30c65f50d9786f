"""What a request's metrics cost: the OpenTelemetry SDK called directly (the old way) against
`gateway.telemetry.metrics.Metrics` (counters tallied, histograms `Distribution`s that also
count the attempts and requests, exemplars off), in the same process and run, interleaved
rounds. Each "request" records what a non-streaming request records: a request and an
attempt (the SDK: a counter and a histogram each; `Metrics`: one duration record each) and 2
token counts.

    .venv/bin/python -m ops.bench.metrics_cost [--requests 20000] [--rounds 5]

The end-to-end bench (`run.py`) cannot see a change this size on this VM (its rounds differ by
±20 %); this one isolates it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from gateway.telemetry.metrics import Metrics


def direct() -> Callable[[], None]:
    reader = PrometheusMetricReader(disable_target_info=True, registry=CollectorRegistry())
    m = MeterProvider(metric_readers=[reader]).get_meter("bench")
    requests, attempts = m.create_counter("requests"), m.create_counter("attempts")
    tokens = m.create_counter("tokens")
    duration, request_duration = m.create_histogram("d"), m.create_histogram("rd")

    def one() -> None:
        attempts.add(1, {"target": "m@a", "outcome": "success"})
        duration.record(0.012, {"target": "m@a", "outcome": "success"})
        tokens.add(12, {"target": "m@a", "gen_ai.token.type": "input"})
        tokens.add(30, {"target": "m@a", "gen_ai.token.type": "output"})
        requests.add(1, {"route": "chat", "status": "200"})
        request_duration.record(0.013, {"route": "chat", "status": "200"})

    return one


def tallied() -> Callable[[], None]:
    m = Metrics()

    def one() -> None:  # attempts and requests are counted by their durations' records
        m.duration.record(0.012, {"target": "m@a", "outcome": "success"})
        m.tokens.add(12, {"target": "m@a", "gen_ai.token.type": "input"})
        m.tokens.add(30, {"target": "m@a", "gen_ai.token.type": "output"})
        m.request_duration.record(0.013, {"route": "chat", "status": "200"})

    return one


async def measure(one: Callable[[], None], n: int) -> float:
    """CPU µs per request; a scrape-sized flush every 1000 requests is included."""
    start = time.process_time()
    for i in range(n):
        one()
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let a due flush timer run, as on a busy gateway
    return (time.process_time() - start) / n * 1e6


async def compare(n: int, rounds: int) -> None:
    old, new = direct(), tallied()
    await measure(old, 2000)  # warm-up
    await measure(new, 2000)
    results: dict[str, list[float]] = {"direct": [], "tallied": []}
    for _ in range(rounds):
        results["direct"].append(await measure(old, n))
        results["tallied"].append(await measure(new, n))
    d, t = (statistics.median(results[k]) for k in ("direct", "tallied"))
    print(f"metrics per request ({n} requests x {rounds} interleaved rounds, CPU µs, median):")
    print(
        f"  OTel SDK directly (old)       {d:7.1f}   rounds {sorted(round(x, 1) for x in results['direct'])}"
    )
    print(
        f"  Metrics with tallies (new)    {t:7.1f}   rounds {sorted(round(x, 1) for x in results['tallied'])}"
    )
    print(f"  new / old = {t / d:.2f}   saved {d - t:.1f} µs per request")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args(argv)
    asyncio.run(compare(a.requests, a.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
