"""Turnout's benchmarks, run from the repository root as modules (README.md beside this file
says what each one measures and how to read it):

    python -m ops.bench.run           direct vs a minimal pass-through vs Turnout
    python -m ops.bench.soak          cold start, idle memory, memory over a long run
    python -m ops.bench.redis_load    the fleet store's Redis commands vs request rate
    python -m ops.bench.body_memory   peak memory under concurrent large bodies
    python -m ops.bench.metrics_cost  a request's metric calls, in process
    python -m ops.bench.features      feature extraction on large prompts, in process
    python -m ops.bench.instructions  instructions per request (callgrind), this tree vs a rev

What they share:

    procs.py     child processes pinned to cores and ended on any exit, readiness waits
    procfs.py    /proc: CPU per process and machine-wide, memory, a quiet-machine wait
    net.py       loopback: free ports, probes, a proxy-free HTTP client
    stats.py     percentiles, least-squares slope
    report.py    number formatting, machine/commit header, the JSON file of results
    redisproc.py a private redis-server (and Sentinel) process, shared with the tests

run.py's parts: workload.py (what is sent), loadtool.py (wrk/hey/loadgen runs), streaming.py,
summary.py (tables, targets, JSON), profiling.py (--profile); its child processes
upstream.py, passthrough.py and loadgen.py. soak.py's: soak_client.py, flapper.py.
redis_load.py's: redis_fleet.py, redis_monitor.py, redis_traffic.py, redis_report.py.
"""
