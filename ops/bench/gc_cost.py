"""What the cyclic garbage collector costs `turnout serve` under load, with the collector as
`gateway.runtime.heap.settle` leaves it (frozen start-up heap, young threshold 10,000) and as
CPython starts it (threshold 700, nothing frozen): two gateways on one core, the same tiny
upstream, rounds interleaved so the machine's drift cancels.

    .venv/bin/python -m ops.bench.gc_cost [--rounds 4] [--duration 5] [--connections 32]

Each gateway runs under `ops.bench.gc_cost serve <variant> -c CONFIG`, which times every
collection (`gc.callbacks`) and reports the totals when sent SIGUSR2; the default variant has
`settle()` replaced by nothing, so the only difference is the collector's settings. Printed per
variant: collections and milliseconds per 1,000 requests by generation, the share of the CPU
they took, and CPU per request (the latter varies ±15 % between rounds on a shared VM; the
collection times are the steady number).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ops.bench.loadtool import LoadTool
from ops.bench.net import free_port
from ops.bench.procfs import cpu_s
from ops.bench.procs import CLIENT_CORE, SERVER_CORE, pick_python, supervised, wait_listening
from ops.bench.run import write_config

VARIANTS = ("tuned", "default")
LOOPBACK = "127.0.0.1"


def serve(variant: str, argv: list[str]) -> int:
    """Run `turnout serve` with every collection timed; SIGUSR2 writes the totals since the
    last SIGUSR2 as one JSON line to `<config>.gc` and starts them again."""
    from gateway import cli
    from gateway.runtime import heap

    if variant == "default":
        heap.settle = lambda: None
    totals = {g: [0, 0.0] for g in range(3)}
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            t = totals[info["generation"]]
            t[0] += 1
            t[1] += time.perf_counter() - started[0]

    gc.callbacks.append(timed)
    out = Path(argv[argv.index("-c") + 1]).with_suffix(".gc")

    def report(_sig: int, _frame: object) -> None:
        line = {
            "collections": [t[0] for t in totals.values()],
            "s": [t[1] for t in totals.values()],
        }
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")
        for t in totals.values():
            t[0], t[1] = 0, 0.0

    signal.signal(signal.SIGUSR2, report)
    return cli.main(["serve", *argv])


def _read_report(path: Path, before: int) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) > before:
            return dict(json.loads(lines[before]))
        time.sleep(0.02)
    raise RuntimeError(f"no collector report in {path}")


def run(args: argparse.Namespace, children: Any, tmp: Path) -> int:
    python = pick_python()
    tool = LoadTool(LoadTool.pick(args.loadgen), children, python, args.connections)
    up = free_port()
    children.start("upstream", [python, "-m", "ops.bench.upstream", "--host", LOOPBACK,
                                "--port", str(up)], CLIENT_CORE)  # fmt: skip
    wait_listening(children, "upstream", up)
    ports: dict[str, int] = {}
    for variant in VARIANTS:
        ports[variant] = port = free_port()
        config = tmp / f"{variant}.yaml"
        write_config(config, port, up)
        argv = [python, "-m", "ops.bench.gc_cost", "serve", variant, "-c", str(config)]
        children.start(variant, argv, SERVER_CORE)
        wait_listening(children, variant, port)
    time.sleep(1.0)  # settle() runs once the server is listening
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for variant in VARIANTS:  # a warm-up round each, not counted
        tool.run(f"http://{LOOPBACK}:{ports[variant]}/v1/chat/completions", 2)
    for i in range(args.rounds):
        for variant in VARIANTS:
            pid = children.procs[variant].pid
            report = tmp / f"{variant}.gc"
            seen = len(report.read_text().splitlines()) if report.exists() else 0
            os.kill(pid, signal.SIGUSR2)  # start the totals afresh
            _read_report(report, seen)
            cpu0 = cpu_s(pid)
            r = tool.run(f"http://{LOOPBACK}:{ports[variant]}/v1/chat/completions", args.duration)
            cpu = cpu_s(pid) - cpu0
            os.kill(pid, signal.SIGUSR2)
            gcs = _read_report(report, seen + 1)
            if r["errors"]:
                print(f"{variant}: errors {r['errors']}", file=sys.stderr)
                return 1
            row = {"round": i + 1, "requests": r["ok"], "rps": r["rps"], "cpu_s": cpu, **gcs}
            rows[variant].append(row)
            k = r["ok"] / 1000
            print(
                f"round {i + 1} {variant:7s} {r['rps']:7.0f} req/s "
                f"{cpu / r['ok'] * 1e6:5.0f} us CPU/req  collections/1k req "
                + " ".join(f"{c / k:5.1f}" for c in gcs["collections"])
                + f"  ms/1k req {sum(gcs['s']) * 1000 / k:6.2f} ({sum(gcs['s']) / cpu:5.1%} of CPU)",
                flush=True,
            )
    print()
    for variant in VARIANTS:
        rs = rows[variant]
        n = sum(r["requests"] for r in rs)
        cpu = sum(r["cpu_s"] for r in rs)
        by_gen = [sum(r["s"][g] for r in rs) for g in range(3)]
        counts = [sum(r["collections"][g] for r in rs) for g in range(3)]
        print(
            f"{variant:7s}: {n} requests; collections per 1,000 requests "
            f"{'/'.join(f'{c * 1000 / n:.1f}' for c in counts)} (gen 0/1/2), "
            f"{'/'.join(f'{s * 1e6 / n:.1f}' for s in by_gen)} us per request, "
            f"{sum(by_gen) / cpu:.1%} of the CPU; CPU per request median "
            f"{statistics.median(r['cpu_s'] / r['requests'] * 1e6 for r in rs):.0f} us"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve(argv[1], argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=5, help="seconds per round and variant")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--loadgen", default="auto", help="wrk, hey or python (default: the best)")
    ap.add_argument("--json", help="also write every round as JSON here")
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args(argv)
    return supervised(
        lambda children, tmp, _pin: run(args, children, tmp),
        what="gc-cost",
        no_pin=args.no_pin,
        time_limit_s=60 + args.rounds * len(VARIANTS) * (args.duration + 3) * 2,
        keep_logs=False,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
