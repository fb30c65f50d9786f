"""Instructions and allocations per request, counted by valgrind's callgrind: repeatable
where timings are not.

    python -m ops.bench.instructions                     # this tree
    python -m ops.bench.instructions --rev fc1d76a       # and a git revision, side by side
    python -m ops.bench.instructions --stream            # streamed answers (20 chunks each)
    python -m ops.bench.instructions --keys              # with 100 client keys, against none
    python -m ops.bench.instructions --limits            # the keys with rpm, tpm and budgets
    python -m ops.bench.instructions --anthropic         # translated to Anthropic, against not
    python -m ops.bench.instructions --gemini            # translated to Gemini, against not
    python -m ops.bench.instructions --messages          # Anthropic clients: translated to
                                                         # OpenAI, and passed through as sent
    python -m ops.bench.instructions --responses         # Responses clients: translated to
                                                         # OpenAI and to Anthropic
    python -m ops.bench.instructions --floor             # and the bare pass-through, and no proxy

`ops.bench.inproc` (client + Turnout + a tiny upstream in one process) runs twice under
callgrind, with N and 5N requests; the difference divided by 4N is the instructions one
request costs on the whole path, start-up and imports cancelled out. With `--floor` the same
is counted for the bare aiohttp pass-through (`ops.bench.passthrough`) and for no proxy at all
(client and upstream alone); their difference is what a proxy costs, and the pass-through's
cost over Turnout's is the throughput ratio a whole core would give each. The same runs count
calls to Python's allocators (`ops.bench.callgrind`): allocations per request. Neither count
depends on what else the machine is doing, so two trees can be compared to a fraction of a
percent (seconds on a shared 2-core machine vary by ±15 %). Each run takes about a minute.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ops.bench.callgrind import allocations

REPO = Path(__file__).resolve().parents[2]
_COLLECTED = re.compile(r"Collected : (\d+)")


def count(tree: Path, n: int, out: Path, stream: bool = False, flag: str = "") -> tuple[int, int]:
    """Instructions and allocations of one `inproc` run of `n` requests on `tree`'s gateway
    (`flag`: one of inproc's variants, `--keys`, `--anthropic`, `--gemini`, `--passthrough`...,
    or several, space-separated: `--messages --anthropic`)."""
    extra = (["--stream"] if stream else []) + flag.split()
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, "-m", "ops.bench.inproc", str(n), *extra],
        cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed in {tree}:\n{proc.stderr[-2000:]}")
    return int(found.group(1)), allocations(out)


def per_request(
    tree: Path, n: int, tmp: Path, stream: bool = False, flag: str = ""
) -> tuple[float, float]:
    """(instructions, allocations) one request costs: the 5n run less the n run, over 4n."""
    with ThreadPoolExecutor(2) as pool:  # the two runs side by side: counts do not interfere
        small = pool.submit(count, tree, n, tmp / "small.out", stream, flag)
        large = pool.submit(count, tree, 5 * n, tmp / "large.out", stream, flag)
        (i1, a1), (i5, a5) = small.result(), large.result()
        return (i5 - i1) / (4 * n), (a5 - a1) / (4 * n)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rev", help="also measure this git revision (checked out in a worktree)")
    ap.add_argument("-n", type=int, default=100, help="requests in the small run (large: 5n)")
    ap.add_argument("--stream", action="store_true", help="streamed answers (20 chunks each)")
    ap.add_argument(
        "--keys", action="store_true", help="this tree with 100 client keys, against without"
    )
    ap.add_argument(
        "--limits",
        action="store_true",
        help="this tree with 100 client keys that have rate limits and budgets, against none",
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also count the bare pass-through and no proxy, and report each proxy's own cost",
    )
    ap.add_argument(
        "--anthropic",
        action="store_true",
        help="this tree with an Anthropic-format upstream (every request translated), against "
        "an OpenAI-format one",
    )
    ap.add_argument(
        "--gemini",
        action="store_true",
        help="this tree with a Gemini-format upstream (every request translated), against an "
        "OpenAI-format one",
    )
    ap.add_argument(
        "--messages",
        action="store_true",
        help="this tree with an Anthropic client (/v1/messages), translated to an OpenAI-format "
        "upstream and passed through to an Anthropic-format one, against an OpenAI client",
    )
    ap.add_argument(
        "--responses",
        action="store_true",
        help="this tree with a Responses client (/v1/responses), translated to an OpenAI-format "
        "upstream and to an Anthropic-format one, against an OpenAI client",
    )
    args = ap.parse_args(argv)
    rows: list[tuple[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.keys:
            rows.append(("client keys", per_request(REPO, args.n, tmp, args.stream, "--keys")))
        if args.limits:
            limited = per_request(REPO, args.n, tmp, args.stream, "--limits")
            rows.append(("keys+limits", limited))
        if args.anthropic:
            translated = per_request(REPO, args.n, tmp, args.stream, "--anthropic")
            rows.append(("anthropic", translated))
        if args.gemini:
            rows.append(("gemini", per_request(REPO, args.n, tmp, args.stream, "--gemini")))
        if args.messages:
            rows.append(("msgs->openai", per_request(REPO, args.n, tmp, args.stream, "--messages")))
            both = "--messages --anthropic"
            rows.append(("msgs->anthr.", per_request(REPO, args.n, tmp, args.stream, both)))
        if args.responses:
            rows.append(
                ("resp->openai", per_request(REPO, args.n, tmp, args.stream, "--responses"))
            )
            both = "--responses --anthropic"
            rows.append(("resp->anthr.", per_request(REPO, args.n, tmp, args.stream, both)))
        rows.append(("this tree", per_request(REPO, args.n, tmp, args.stream)))
        floor: dict[str, tuple[float, float]] = {}
        if args.floor:
            for name in ("passthrough", "direct"):
                floor[name] = per_request(REPO, args.n, tmp, args.stream, f"--{name}")
        if args.rev:
            wt = tmp / "rev"
            subprocess.run(
                ["git", "worktree", "add", "-q", str(wt), args.rev], cwd=REPO, check=True
            )
            try:
                # Its gateway, this tree's harness (older trees may not have it).
                (wt / "ops" / "bench").mkdir(parents=True, exist_ok=True)
                for name in ("__init__.py", "inproc.py", "passthrough.py"):
                    (wt / "ops" / "bench" / name).write_bytes(
                        (REPO / "ops/bench" / name).read_bytes()
                    )
                (wt / "ops" / "__init__.py").touch()
                rows.append((args.rev, per_request(wt, args.n, tmp, args.stream)))
            finally:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(wt)], cwd=REPO, check=False
                )
    base = rows[-1][1][0]
    for name, (value, allocs) in rows:
        ratio = f"  ({value / base:.3f}x of {rows[-1][0]})" if len(rows) > 1 else ""
        print(
            f"{name:>12}: {value / 1e6:.3f} M instructions, {allocs:,.0f} allocations "
            f"per request{ratio}"
        )
    if floor:
        (direct, d_allocs), (bare, b_allocs) = floor["direct"], floor["passthrough"]
        print(f"{'no proxy':>12}: {direct / 1e6:.3f} M, {d_allocs:,.0f} (client and upstream)")
        pt_own = (bare - direct) / 1e6
        print(
            f"{'pass-through':>12}: {bare / 1e6:.3f} M, of which the proxy {pt_own:.3f} M "
            f"and {b_allocs - d_allocs:,.0f} allocations"
        )
        for name, (value, allocs) in rows:
            own = value - direct
            print(
                f"{name:>12}: the proxy {own / 1e6:.3f} M, {allocs - d_allocs:,.0f} allocations; "
                f"pass-through ÷ it {(bare - direct) / own:.3f} (the throughput ratio on a "
                "whole core)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
