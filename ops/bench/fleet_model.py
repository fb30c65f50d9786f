"""Phase 5, load model: Redis cost against the number of replicas, and a fit to extrapolate.

Replicas run in worker processes (`ops.bench.fleet_worker`; one worker up to 30 replicas, two
from 100 on: this machine's cores are shared with Redis and the parent stays idle), 50
targets each, `rate` successful outcomes/s in total. Per point: 2 s warm-up after every store
started, then the window of `fleet_cost.measure` (INFO commandstats/cpu/stats around D s).

Ticks are counted black-box. A calibration runs ONE replica (same 50 targets) twice: idle,
and with the per-replica traffic of the 3-replica point. The commands whose rate is the same
(within 15%) in both are the ones the reconciliation tick sends, whatever their names; their
rate for one replica alone is the on-schedule rate. At N replicas, `schedule` = (those
commands/s) / (N x that rate): the share of its ticks an average replica achieved. Every cost
is divided by it (normalised to on-schedule replicas), so an overloaded Python loop that ticks
less does not flatter Redis's numbers. The model `x = c + a*N` (what Redis spends whatever the
fleet, its own cron; and the work per replica) is fitted on the two smaller points, checked
against the largest, and evaluated at 1,000 replicas x 50 targets. There is no N^2 term: since
the heartbeats went (issue 18) a quiet fleet publishes nothing, and an event reaches N
subscribers once - rare next to the ticks. (Before, every replica's heartbeat reached every
replica: a fit with an N^2 term came out negative, that term lost in the noise of 3-100.)
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ops.bench.fleet_common import table
from ops.bench.fleet_cost import Window, measure
from ops.bench.procs import REPO

TARGETS = 50


@dataclass(frozen=True, slots=True)
class LoadPoint:
    replicas: int
    workers: int
    seconds: float
    redis_cores: float
    cmd_s: float
    bytes_s: float  # in + out
    tick_cmd_s: float
    schedule: float  # achieved share of on-schedule ticks
    norm_cores: float
    norm_cmd_s: float
    norm_bytes_s: float
    worker_cores: float
    worker_lag_p99_ms: float | None
    degraded_ever: int
    degraded_end: int


@dataclass(frozen=True, slots=True)
class Fit:
    metric: str
    c: float  # whatever the fleet
    a: float  # per replica
    at_largest: float
    measured_largest: float
    error_pct: float | None
    at_1000: float


@dataclass(frozen=True, slots=True)
class LoadModelResult:
    targets: int
    rate: float
    sync_period_s: float
    tick_commands: list[str]
    tick_cmd_s_one: float  # one lone replica, on schedule
    points: list[LoadPoint]
    fits: list[Fit]


async def _spawn(url: str, n: int, tprefix: str, rate: float, sync: float, prefix: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops.bench.fleet_worker",
        url,
        str(n),
        tprefix,
        str(TARGETS),
        str(rate),
        str(sync),
        prefix,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(REPO),
    )
    assert proc.stdout is not None
    async with asyncio.timeout(90):
        line = await proc.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"fleet worker did not start: {line!r}")
    return proc


async def _finish(proc: Any) -> dict[str, Any]:
    proc.stdin.write(b"stop\n")
    await proc.stdin.drain()
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
        await proc.wait()
    doc: dict[str, Any] = json.loads(line)
    return doc


async def _run(
    url: str, admin: Redis, n: int, rate: float, sync: float, seconds: float
) -> tuple[Window, list[dict[str, Any]], int]:
    workers = 1 if n <= 30 else 2
    tprefix = f"load-{uuid.uuid4().hex[:6]}-"
    sizes = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    procs = []
    try:
        for i, size in enumerate(sizes):
            procs.append(await _spawn(url, size, tprefix, rate / workers, sync, f"w{i}-r"))
        await asyncio.sleep(2.0)
        w = await measure([admin], seconds)
        docs = [await _finish(p) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    return w, docs, workers


def _fit(metric: str, xs: list[int], ys: list[float]) -> Fit:
    """x = c + a*N through the two smaller points."""
    (n1, n2, n3), (y1, y2, y3) = xs[:3], ys[:3]
    a = (y2 - y1) / (n2 - n1)
    c = y1 - a * n1
    pred = c + a * n3
    err = 100 * (pred - y3) / y3 if y3 else None
    return Fit(metric, c, a, pred, y3, err, c + a * 1000)


async def load_model(
    url: str,
    admin: Redis,
    *,
    counts: tuple[int, int, int] = (3, 30, 300),
    rate: float = 100.0,
    seconds: float = 6.0,
    sync_period_s: float = 0.25,
) -> LoadModelResult:
    cal_s = max(2.0, seconds / 2)
    idle, _, _ = await _run(url, admin, 1, 0.0, sync_period_s, cal_s)
    busy, _, _ = await _run(url, admin, 1, rate / counts[0], sync_period_s, cal_s)
    ticks: list[str] = []
    for name, n in idle.calls.items():
        a, b = n / idle.seconds, busy.calls.get(name, 0) / busy.seconds
        if a > 0 and b > 0 and abs(a - b) <= 0.15 * max(a, b):
            ticks.append(name)
    # the lower of the two: a leftover client of an earlier phase could only add commands
    one = min(
        sum(idle.calls[t] for t in ticks) / idle.seconds,
        sum(busy.calls[t] for t in ticks) / busy.seconds,
    )
    points = []
    for n in counts:
        w, docs, workers = await _run(url, admin, n, rate, sync_period_s, seconds)
        tick_s = sum(w.calls.get(t, 0) for t in ticks) / w.seconds
        sched = tick_s / (n * one) if one else 0.0
        cores, cmd_s = w.cpu_s / w.seconds, w.commands / w.seconds
        bytes_s = (w.net_in + w.net_out) / w.seconds
        div = sched if sched > 0 else float("nan")
        lags = [d["lag_p99_ms"] for d in docs if d["lag_p99_ms"] is not None]
        points.append(
            LoadPoint(
                n,
                workers,
                round(w.seconds, 2),
                cores,
                cmd_s,
                bytes_s,
                tick_s,
                sched,
                cores / div,
                cmd_s / div,
                bytes_s / div,
                sum(float(d["cpu_cores"]) for d in docs),
                max(lags) if lags else None,
                sum(int(d["degraded_ever"]) for d in docs),
                sum(int(d["degraded_end"]) for d in docs),
            )
        )
    xs = [p.replicas for p in points]
    fits = []
    for metric, ys in (
        ("redis cores", [p.norm_cores for p in points]),
        ("commands/s", [p.norm_cmd_s for p in points]),
        ("MB/s", [p.norm_bytes_s / 1e6 for p in points]),
    ):
        fits.append(_fit(metric, xs, ys))
    return LoadModelResult(TARGETS, rate, sync_period_s, sorted(ticks), one, points, fits)


def render(r: LoadModelResult) -> str:
    head = ["replicas", "workers", "redis cores", "cmd/s", "MB/s", "schedule", "ticks/s/rep"]
    head += ["norm cores", "norm cmd/s", "norm MB/s", "worker cores", "worker lag p99 ms"]
    head += ["degraded ever/end"]
    rows = [
        [
            p.replicas,
            p.workers,
            f"{p.redis_cores:.3f}",
            f"{p.cmd_s:.0f}",
            f"{p.bytes_s / 1e6:.2f}",
            f"{100 * p.schedule:.0f}%",
            f"{p.schedule / r.sync_period_s:.2f}",
            f"{p.norm_cores:.3f}",
            f"{p.norm_cmd_s:.0f}",
            f"{p.norm_bytes_s / 1e6:.2f}",
            f"{p.worker_cores:.2f}",
            "—" if p.worker_lag_p99_ms is None else f"{p.worker_lag_p99_ms:.0f}",
            f"{p.degraded_ever}/{p.degraded_end}",
        ]
        for p in r.points
    ]
    title = (
        f"load model: {r.targets} targets/replica, {r.rate:g} req/s total, sync "
        f"{r.sync_period_s} s; tick commands (black-box) {','.join(r.tick_commands) or 'none'}"
        f" = {r.tick_cmd_s_one:.0f}/s for one lone replica; norm = measured / schedule"
    )
    out = [table(title, head, rows)]
    n3 = r.points[-1].replicas if r.points else 0
    fhead = ["metric (normalised)", "c (fixed)", "a (per N)", f"model at {n3}"]
    fhead += [f"measured at {n3}", "error", "model at 1000 x 50 targets"]
    frows = [
        [
            f.metric,
            f"{f.c:.4g}",
            f"{f.a:.4g}",
            f"{f.at_largest:.4g}",
            f"{f.measured_largest:.4g}",
            "—" if f.error_pct is None else f"{f.error_pct:+.0f}%",
            f"{f.at_1000:.4g}",
        ]
        for f in r.fits
    ]
    fit_title = "model x = c + a*N, fitted on the two smaller counts (normalised by schedule)"
    out.append(table(fit_title, fhead, frows))
    return "\n\n".join(out)
