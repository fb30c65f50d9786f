"""Peak memory of the gateway under concurrent maximum-size request bodies.

    .venv/bin/python -m ops.bench.body_memory                  # 1, 3 and 10 at once
    .venv/bin/python -m ops.bench.body_memory --counts 1 3 10 20 --mib 19

For each count a fresh `turnout serve` (its own process, defaults for everything but one
provider) is started in front of a separate `turnout sim` process; that many chat requests,
each carrying a base64 "image" of `--mib` MiB, are sent at once; the gateway's resident set is
read from /proc before (VmRSS) and its peak after (VmHWM). Every process listens on 127.0.0.1.
Statuses are reported too: above `server.max_body_bytes_in_flight` some requests are refused
with 503 — that is the bound working, not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if not __package__:  # run as a file (`python ops/bench/body_memory.py`): re-run as the module
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_root, os.getenv("PYTHONPATH")]))
    os.execv(sys.executable, [sys.executable, "-m", "ops.bench.body_memory", *sys.argv[1:]])

import aiohttp

from ops.bench.net import LOOPBACK, free_port
from ops.bench.procfs import proc_status
from ops.bench.procs import Children, wait_http
from ops.bench.report import write_json


def body_of(mib: float) -> bytes:
    image = "A" * int(mib * 1024 * 1024)
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}},
    ]
    return json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": content}]}
    ).encode()


async def send_all(url: str, body: bytes, n: int) -> Counter[int]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def one() -> int:
            headers = {"Content-Type": "application/json"}
            async with s.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
                await r.read()
                return r.status

        return Counter(await asyncio.gather(*(one() for _ in range(n))))


def measure(children: Children, count: int, body: bytes, sim_url: str) -> dict[str, object]:
    port = free_port()
    config = children.logdir / f"gw-{count}.yaml"
    config.write_text(
        "providers:\n"
        f"  sim: {{base_url: '{sim_url}', timeouts: {{total_s: 120}}}}\n"
        "targets:\n  m@sim: {provider: sim, model: sim-small}\n"
        "routes:\n  - {alias: bench, candidates: [m@sim]}\n"
    )
    name = f"gw-{count}"
    argv = [sys.executable, "-m", "gateway", "serve", "-c", str(config)]
    gw = children.start(name, [*argv, "--host", LOOPBACK, "--port", str(port)], None)
    try:
        wait_http(children, name, port, "/healthz", time.monotonic(), 30.0, interval_s=0.05)
        before = proc_status(gw.pid)["VmRSS"]
        statuses = asyncio.run(send_all(f"http://{LOOPBACK}:{port}", body, count))
        peak = proc_status(gw.pid)["VmHWM"]
        return {"count": count, "rss_before_mb": before / 1024, "peak_mb": peak / 1024,
                "statuses": dict(statuses)}  # fmt: skip
    finally:
        children.stop(name, grace_s=10)


def run(counts: list[int], body: bytes) -> list[dict[str, object]]:
    sim_port = free_port()
    with tempfile.TemporaryDirectory(prefix="turnout-body-memory-") as d:
        children = Children(Path(d), pin=False)
        try:
            argv = [sys.executable, "-m", "gateway", "sim", "--host", LOOPBACK]
            children.start("sim", [*argv, "--port", str(sim_port)], None)
            wait_http(children, "sim", sim_port, "/v1/models", time.monotonic(), 30.0, 0.05)
            sim_url = f"http://{LOOPBACK}:{sim_port}/v1"
            print(f"body: {len(body) / 2**20:.1f} MiB per request")
            print(f"{'at once':>8} {'RSS before':>11} {'peak RSS':>9}  statuses")
            rows = []
            for count in counts:
                row = measure(children, count, body, sim_url)
                rows.append(row)
                print(f"{count:>8} {row['rss_before_mb']:>9.0f} MB {row['peak_mb']:>6.0f} MB  "
                      f"{row['statuses']}", flush=True)  # fmt: skip
        finally:
            children.stop_all()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 3, 10])
    ap.add_argument("--mib", type=float, default=19.0, help="image size per request (MiB)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    body = body_of(args.mib)
    rows = run(args.counts, body)
    if args.json:
        write_json(args.json, {"body_bytes": len(body), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
