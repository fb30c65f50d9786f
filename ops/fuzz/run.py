"""Fuzz a Turnout gateway on loopback and report every answer that breaks the contract.

usage: .venv/bin/python -m ops.fuzz.run [--requests 100000] [--seconds 900] [--seed 1]
           [--concurrency 32] [--timeout 30] [--config PATH] [--json report.json]
           [--logdir DIR] [--case N ...]

Starts its own gateway (the embedded demo, or `serve -c PATH`) on 127.0.0.1 and a free port,
sends valid, mutated-JSON, odd-header, odd-path and raw-protocol requests, and exits 0 only
when there was no gateway-own 5xx, no non-OpenAI-shaped error, no hang, no leaked in-flight
count, the process is alive at the end and no credential it was sent reached its logs.
`--seed S --case N` replays case N of seed S alone and prints what was sent and received.
(`python3 -m ops.fuzz.run` and `python3 ops/fuzz/run.py` work too: they re-run it as the
module with .venv/bin/python when needed.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PROG = "python -m ops.fuzz.run"

try:
    import aiohttp  # noqa: F401  (the fuzzer's own client)
except ImportError:  # run by a python without the project's dependencies: use the venv's
    if not VENV_PYTHON.exists() or Path(sys.executable).resolve() == VENV_PYTHON.resolve():
        raise
    _python = str(VENV_PYTHON)
else:
    _python = sys.executable
if _python != sys.executable or not __package__:  # re-run as the module, by that python
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.getenv("PYTHONPATH")]))
    os.execv(_python, [_python, "-m", "ops.fuzz.run", *sys.argv[1:]])

from ops.fuzz.engine import Options, run_fuzz  # noqa: E402
from ops.fuzz.types import Answer, Case  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n")[0])
    p.add_argument("--requests", type=int, default=10_000, help="cases to send (default 10000)")
    p.add_argument("--seconds", type=float, default=300.0, help="stop sending after (default 300)")
    p.add_argument("--seed", type=int, default=1, help="RNG seed: same seed, same cases")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    p.add_argument("--timeout", type=float, default=30.0, help="per request, before a hang")
    p.add_argument("--config", help="fuzz `serve -c PATH` instead of the embedded demo")
    p.add_argument("--admin-token", help="server.admin_token of --config, for /admin/targets")
    p.add_argument("--python", default="", help="interpreter for the gateway (default .venv)")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--logdir", type=Path, help="where the gateway's output goes (default: tmp)")
    p.add_argument("--case", type=int, action="append", default=[], help="replay case N (repeat)")
    return p.parse_args(argv)


def show(case: Case, answer: Answer) -> None:
    print(f"case {case.index} [{case.category}] {case.kind}\n  sent: {case.desc}")
    print(f"  outcome: {answer.outcome} {answer.detail} ({answer.seconds:.2f}s)")
    for r in answer.replies:
        print(f"  reply {r.status} {r.headers.get('content-type', '-')}: {r.body[:300]!r}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(
        requests=args.requests,
        seconds=args.seconds,
        seed=args.seed,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        config=args.config,
        python=args.python,
        logdir=args.logdir,
        cases=tuple(args.case),
        admin_token=args.admin_token,
        on_result=show if args.case else None,
    )
    try:
        report = asyncio.run(run_fuzz(opts))
    except RuntimeError as exc:
        print(f"fuzz: {exc}", file=sys.stderr)
        return 2
    report.command = " ".join([PROG, *(argv if argv is not None else sys.argv[1:])])
    print(report.render())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        print(f"  report: {args.json}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
