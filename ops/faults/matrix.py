"""Run Turnout's fault matrix: every provider fault against real sims and a real gateway, one
table row each, compared with what the row must give.

usage: PYTHONPATH=. .venv/bin/python -m ops.faults.matrix [--quick] [--only 1,8]
           [--json out.json] [--verbose]

Everything listens on 127.0.0.1 on free ports, in this process; every server is closed on the
way out. Exit 0 when every row is as expected, 1 when a row is a MISMATCH, 2 when the matrix
could not run. `--quick` runs each single-request row once and shortens the traffic rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from ops.faults.report import Row, markdown, summary
from ops.faults.scenarios import LOADS, Options, cases, run_case

PROG = "python -m ops.faults.matrix"
SCENARIO_LIMIT_S = 30.0  # one row, at most (then it is a MISMATCH, and the run goes on)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one run per row, shorter traffic rows")
    p.add_argument("--only", default="", help="scenario numbers, comma-separated (e.g. 1,8,15)")
    p.add_argument("--reps", type=int, default=3, help="runs per single-request row (default 3)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--verbose", action="store_true", help="show the gateway's warnings")
    return p.parse_args(argv)


async def _guarded(row_id: str, fault: str, job: Any) -> Row:
    try:
        row: Row = await asyncio.wait_for(job, SCENARIO_LIMIT_S)
    except TimeoutError:
        row = Row(row_id, fault, "")
        row.problems.append(f"did not finish within {SCENARIO_LIMIT_S:.0f} s")
    return row


async def run(opts: Options) -> list[Row]:
    rows: list[Row] = []
    for case in cases():
        if opts.wanted(case.id):
            rows.append(await _guarded(case.id, case.fault, run_case(case, opts)))
    for row_id, runner in LOADS:
        if opts.wanted(row_id):
            rows.append(await _guarded(row_id, runner.__name__, runner(opts)))
    return rows


def _clean(value: Any) -> Any:
    """JSON without NaN/inf (null instead)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
    opts = Options(quick=args.quick, reps=max(1, args.reps), only=only)
    command = " ".join([PROG, *(argv if argv is not None else sys.argv[1:])])
    started = time.monotonic()
    try:
        rows = asyncio.run(run(opts))
    except Exception as exc:  # the rig itself failed (a port, the config): nothing measured
        print(f"fault matrix: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    if not rows:
        print(f"fault matrix: no scenario matches --only {args.only}", file=sys.stderr)
        return 2
    print(markdown(rows))
    print()
    print(summary(rows, seconds, command))
    if args.json:
        doc = {
            "command": command,
            "seconds": round(seconds, 2),
            "ok": all(r.ok for r in rows),
            "rows": [r.to_json() for r in rows],
        }
        args.json.write_text(json.dumps(_clean(doc), indent=2, ensure_ascii=False) + "\n")
        print(f"json: {args.json}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
