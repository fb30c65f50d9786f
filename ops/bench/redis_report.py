"""redis_load.py's report: the phase table, commandstats and MONITOR calls per replica, the
ratio of Redis commands at the highest and lowest request rate, and the model it is held to."""

from __future__ import annotations

import json
from typing import Any

from ops.bench import report as common

STARVED_LAG_MS = 50.0  # gateway loop lag p99 above this: the sync ticks themselves run late


def fmt(v: float | None, spec: str = ".1f") -> str:
    return common.fmt(v, spec, missing="-")


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
        "  degr = 'redis degraded' warnings (a round trip > 0.3 s); ticks/s = HSETNX calls (one "
        "per tick script) / replicas"
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
        w("MONITOR: calls/s by replica and key kind (exact attribution; ticks = tick scripts)")
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
        f"Model per replica and tick, any number of targets ({m['targets']} here): EVAL tick "
        f"+ 2 HGETALL window = {m['fixed_per_tick']} fixed, + HINCRBY per (target, 1 s bucket, "
        f"kind) with outcomes + EXPIRE per bucket, + a PING ~1/s; ideal "
        f"{m['ideal_ticks_per_s']:g} ticks/s"
    )
    failed = sum(ph["failed"] for ph in phases)
    w(f"Failed requests, all phases: {failed}" + ("" if failed == 0 else "   <-- MUST BE 0"))
    return "\n".join(out)
