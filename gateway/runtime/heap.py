"""The cyclic garbage collector, set for a long-running server.

CPython starts a young-generation collection whenever the tracked objects allocated since
the last one outnumber those freed by 700. Under load that count never settles: every
request in flight holds a few dozen containers (its task, futures, dicts, the exchange) until
it ends, so with 32 requests in flight the count swings past 700 every dozen requests and each
collection walks every request in flight; the older generations are walked in turn, the
oldest holding everything loaded at start (modules, the config, OpenTelemetry): ~70,000
objects. Measured on `turnout serve` under wrk (`python -m ops.bench.gc_cost`): ~10 % of the
CPU per request went to collections that found almost nothing, since reference counting frees
what a request leaves behind.

`settle()`, once the server is up: what is alive then lives as long as the process, so it is
frozen out of the collector's sight (`gc.freeze`), and a young collection waits for 10,000
surviving allocations: cycles are still found (an exception's traceback, a task's), within
a bounded amount of garbage, at a small fraction of the cost.
"""

from __future__ import annotations

import gc

# Net tracked allocations between young collections, and how many of each generation's
# collections make one of the next (CPython's defaults: 700, 10, 10).
THRESHOLDS = (10_000, 10, 10)


def settle() -> None:
    """Collect once, freeze what survives start-up, and collect less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
