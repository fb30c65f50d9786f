"""What run.py prints at the end and writes with --json: the tables of both measurements, the
targets and whether they were met, and the notes (tracing cost, busy machine, all rounds)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ops.bench.loadtool import LoadResult
from ops.bench.procs import CLIENT_CORE, SERVER_CORE
from ops.bench.report import fmt, pctf
from ops.bench.workload import STREAM_EVENTS

TARGETS = {"rps_ratio": 0.66, "cpu_ms": 0.3, "ttft_p50_ms": 1.0, "ttft_p99_ms": 3.0}


def median_round(results: list[LoadResult]) -> LoadResult:
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


LABELS = {
    "direct": "(a) direct → bench upstream",
    "direct-sim": "(a') direct → turnout sim",
    "passthrough": "(b) aiohttp pass-through",
    "turnout": "(c) Turnout",
    "turnout-notrace": "(c') Turnout, traced",
}


def load_table(rows: list[LoadResult], show_round: bool) -> list[str]:
    head = f"{'':30} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10}"
    head += f" {'core0':>6} {'upstr':>6} {'loadgen':>7} {'other':>6}"
    out = [("round " if show_round else "") + head]
    for r in rows:
        label = LABELS.get(r.target, r.target)
        proxies = ("passthrough", "turnout", "turnout-notrace")
        cpu = r.server_cpu_ms_per_req if r.target in proxies else None
        line = f"{label:30} {r.rps:7.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} {fmt(cpu, '.3f'):>10}"
        line += f" {pctf(r.server_busy):>6} {pctf(r.upstream_busy):>6}"
        line += f" {pctf(r.loadgen_busy):>7} {pctf(r.foreign_busy):>6}"
        if r.errors:
            line += f"  ERRORS {r.errors}"
        out.append((f"{r.round:>5} " if show_round else "") + line)
    return out


def stream_table(s: dict[str, Any]) -> list[str]:
    out = [
        f"{'':16} {'n':>4} {'TTFT p50':>9} {'p99':>7} {'total p50':>10} {'p99':>7}"
        f" {'+TTFT p50':>10} {'p99':>6} {'+total p50':>11} {'p99':>6} {'CPU ms/req':>10}"
    ]
    for name, row in s["paths"].items():
        line = f"{name:16} {row['n']:4d} {row['ttft_p50_ms']:9.2f} {row['ttft_p99_ms']:7.2f}"
        line += f" {row['total_p50_ms']:10.2f} {row['total_p99_ms']:7.2f}"
        line += f" {fmt(row.get('added_ttft_p50_ms')):>10} {fmt(row.get('added_ttft_p99_ms')):>6}"
        line += f" {fmt(row.get('added_total_p50_ms')):>11} {fmt(row.get('added_total_p99_ms')):>6}"
        line += f" {fmt(row.get('cpu_ms_per_req'), '.3f'):>10}"
        if row["errors"]:
            line += f"  ERRORS {row['errors']}"
        out.append(line)
    return out


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def header_lines(args: argparse.Namespace, info: dict[str, Any], pin: bool) -> list[str]:
    """The run's settings, machine and versions: printed first, and again above the summary."""
    tiny_desc = "ops/bench/upstream.py (aiohttp low-level server, canned answer)"
    upstream_desc = tiny_desc if args.upstream == "tiny" else "turnout sim, latency 0"
    if args.upstream == "sim":
        LABELS["direct"] = "(a) direct → turnout sim"
        LABELS["direct-tiny"] = "(a') direct → bench upstream"
    return [
        f"Turnout benchmark — {info['date']} — commit {info['commit']}",
        f"machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}; Python "
        f"{info['python']}, aiohttp {info['aiohttp']}, uvloop {info['uvloop']}",
        f"load tool: {info['load_tool']}; mode: {'quick' if args.quick else 'full'}",
        (
            f"pinning: server under test (proxy, or the upstream itself for direct) on core "
            f"{SERVER_CORE}; upstream + load generator share core {CLIENT_CORE}"
            if pin
            else "pinning: OFF (taskset missing, fewer than 2 cores or --no-pin)"
        ),
        f"non-stream upstream: {upstream_desc}"
        + (f"; every benchmark process runs at niceness {args.nice}" if args.nice else ""),
    ]


@dataclass
class Outcome:
    """Every number of one run (non-streaming rounds, the streaming run) and the verdicts."""

    results: dict[str, list[LoadResult]]
    stream: dict[str, Any]
    chosen: dict[str, LoadResult]
    checks: dict[str, Any]
    passed: dict[str, bool]

    @property
    def failed(self) -> bool:
        """Some requests failed: the numbers are not valid."""
        failed = [r for rs in self.results.values() for r in rs if r.errors]
        return bool(failed or [n for n, row in self.stream["paths"].items() if row["errors"]])

    @property
    def missed(self) -> list[str]:
        return [k for k, ok in self.passed.items() if not ok]


def judge(results: dict[str, list[LoadResult]], stream: dict[str, Any]) -> Outcome:
    """The median-rps round of each path, and the targets checked against it."""
    chosen = {name: median_round(rs) for name, rs in results.items()}
    sy, pt = chosen["turnout"], chosen["passthrough"]
    sy_s = stream["paths"]["turnout"]
    checks: dict[str, Any] = {
        "rps_ratio": sy.rps / pt.rps,
        "cpu_ms": sy.server_cpu_ms_per_req,
        "ttft_p50_ms": sy_s["added_ttft_p50_ms"],
        "ttft_p99_ms": sy_s["added_ttft_p99_ms"],
    }
    passed = {
        "rps_ratio": checks["rps_ratio"] >= TARGETS["rps_ratio"],
        "cpu_ms": (checks["cpu_ms"] or 1e9) <= TARGETS["cpu_ms"],
        "ttft_p50_ms": checks["ttft_p50_ms"] <= TARGETS["ttft_p50_ms"],
        "ttft_p99_ms": checks["ttft_p99_ms"] <= TARGETS["ttft_p99_ms"],
    }
    return Outcome(results, stream, chosen, checks, passed)


def summary_lines(args: argparse.Namespace, header: list[str], o: Outcome) -> list[str]:
    results, stream, chosen, checks, passed = o.results, o.stream, o.chosen, o.checks, o.passed
    sy, pt = chosen["turnout"], chosen["passthrough"]
    sy_s = stream["paths"]["turnout"]
    summary = ["", "=" * 100, *header, ""]
    summary.append(
        f"Non-streaming: {args.connections} connections, {args.duration} s per run after "
        f"{args.warmup} s warm-up; median-rps round of {args.rounds} "
        "(core0/upstr/loadgen/other = CPU used during the run, in % of one core)"
    )
    summary += load_table(list(chosen.values()), show_round=False)
    summary.append(
        f"\nStreaming: {args.stream_rate:g} req/s per path ({args.arrivals} arrivals) for "
        f"{args.stream_duration:g} s "
        f"(+1 s warm-up), open loop; times in ms; + = minus direct at the same percentile; "
        f"CPU ms/req = proxy CPU per streamed request"
    )
    summary += stream_table(stream)
    summary.append(
        f"  client start lag max {stream['max_start_lag_ms']:.2f} ms; other processes used "
        f"{pctf(stream['foreign_busy'])} of a core meanwhile"
    )
    summary += [
        "",
        "Targets:",
        f"  Turnout rps / pass-through rps   {checks['rps_ratio']:6.2f}     "
        f"(target ≥ {TARGETS['rps_ratio']})   {verdict(passed['rps_ratio'])}",
        f"  Turnout CPU per request          {fmt(checks['cpu_ms'], '6.3f')} ms  "
        f"(target ≤ {TARGETS['cpu_ms']})    {verdict(passed['cpu_ms'])}"
        f"   [pass-through: {fmt(pt.server_cpu_ms_per_req, '.3f')} ms]",
        f"  Turnout added TTFT p50           {checks['ttft_p50_ms']:6.2f} ms  "
        f"(target ≤ {TARGETS['ttft_p50_ms']:g})      {verdict(passed['ttft_p50_ms'])}",
        f"  Turnout added TTFT p99           {checks['ttft_p99_ms']:6.2f} ms  "
        f"(target ≤ {TARGETS['ttft_p99_ms']:g})      {verdict(passed['ttft_p99_ms'])}",
        f"  (pass-through for reference: rps {pt.rps:.0f}, added TTFT p50 "
        f"{stream['paths']['passthrough']['added_ttft_p50_ms']:.2f} ms, p99 "
        f"{stream['paths']['passthrough']['added_ttft_p99_ms']:.2f} ms)",
    ]
    nt = chosen.get("turnout-notrace")
    if nt is not None and nt.server_cpu_ms_per_req and sy.server_cpu_ms_per_req:
        summary.append(
            f"  Tracing cost (every request's spans recorded, 200 kept for /ui) vs the default "
            f"(no span recorded): CPU {nt.server_cpu_ms_per_req:.3f} vs "
            f"{sy.server_cpu_ms_per_req:.3f} ms/req "
            f"(+{nt.server_cpu_ms_per_req - sy.server_cpu_ms_per_req:.3f} ms), "
            f"rps {nt.rps:.0f} vs {sy.rps:.0f} ({nt.rps / sy.rps:.2f}x)"
        )
    pairs = list(zip(results["passthrough"], results["turnout"], strict=True))
    if len(pairs) > 1:
        by_round = ", ".join(f"{b.rps / a.rps:.2f}" for a, b in pairs)
        summary.append(
            f"  rps ratio in each round (pass-through and Turnout back to back): {by_round}"
        )
    if sy.server_cpu_ms_per_req and pt.server_cpu_ms_per_req:
        summary += [
            f"  Turnout CPU above the pass-through: "
            f"{sy.server_cpu_ms_per_req - pt.server_cpu_ms_per_req:.3f} ms/req non-streaming, "
            f"{sy_s['cpu_ms_per_req'] - stream['paths']['passthrough']['cpu_ms_per_req']:.3f} "
            f"ms per {STREAM_EVENTS}-event stream",
            f"  CPU-based throughput ratio (pass-through CPU/req ÷ Turnout CPU/req) "
            f"{pt.server_cpu_ms_per_req / sy.server_cpu_ms_per_req:.2f} — what the rps ratio "
            "is when each has a whole core; it does not depend on what neighbours do",
        ]
    busy = [r for rs in results.values() for r in rs if (r.foreign_busy or 0) > 0.05]
    if busy or stream["foreign_busy"] > 0.05:
        worst = max(busy, key=lambda r: r.foreign_busy or 0, default=None)
        top = worst.foreign_top if worst else stream["foreign_top"]
        summary.append(
            f"\nWARNING: other processes used CPU during {len(busy)} run(s) (worst "
            f"{pctf(worst.foreign_busy if worst else stream['foreign_busy'])} of a core: {top}); "
            "numbers from a busy machine are pessimistic, run again when it is quiet."
        )
    if args.rounds > 1:
        summary.append("\nAll rounds:")
        summary += load_table([r for rs in results.values() for r in rs], show_round=True)
    return summary


def json_doc(
    args: argparse.Namespace,
    info: dict[str, Any],
    pin: bool,
    o: Outcome,
    profile_text: str | None,
) -> dict[str, Any]:
    return {
        "machine": info,
        "settings": {
            k: getattr(args, k)
            for k in (
                "quick",
                "connections",
                "duration",
                "warmup",
                "rounds",
                "stream_rate",
                "stream_duration",
                "arrivals",
                "upstream",
                "nice",
            )
        },
        "pinned": pin,
        "non_streaming": {
            "chosen": {k: vars(v) for k, v in o.chosen.items()},
            "rounds": {k: [vars(r) for r in rs] for k, rs in o.results.items()},
        },
        "streaming": o.stream,
        "checks": o.checks,
        "targets": TARGETS,
        "passed": o.passed,
        "profile": profile_text,
    }
