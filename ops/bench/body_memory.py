"""Peak memory of the gateway under concurrent maximum-size request bodies.

    .venv/bin/python ops/bench/body_memory.py                  # 1, 3 and 10 at once
    .venv/bin/python ops/bench/body_memory.py --counts 1 3 10 20 --mib 19

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
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]


def spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """A `python -m gateway ...` child, its output in `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", *argv], cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def body_of(mib: float) -> bytes:
    image = "A" * int(mib * 1024 * 1024)
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}},
    ]
    return json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": content}]}
    ).encode()


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
            try:
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s")


async def send_all(url: str, body: bytes, n: int) -> Counter[int]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def one() -> int:
            headers = {"Content-Type": "application/json"}
            async with s.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
                await r.read()
                return r.status

        return Counter(await asyncio.gather(*(one() for _ in range(n))))


async def measure(count: int, body: bytes, sim_url: str, tmp: Path) -> dict[str, object]:
    port = free_port()
    config = tmp / f"gw-{count}.yaml"
    config.write_text(
        "providers:\n"
        f"  sim: {{base_url: '{sim_url}', timeouts: {{total_s: 120}}}}\n"
        "targets:\n  m@sim: {provider: sim, model: sim-small}\n"
        "routes:\n  - {alias: bench, candidates: [m@sim]}\n"
    )
    gw = spawn(["serve", "-c", str(config), "--port", str(port)], tmp / f"gw-{count}.log")
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url + "/healthz", gw)
        before = status_kib(gw.pid, "VmRSS")
        statuses = await send_all(url, body, count)
        peak = status_kib(gw.pid, "VmHWM")
        return {"count": count, "rss_before_mb": before / 1024, "peak_mb": peak / 1024,
                "statuses": dict(statuses)}  # fmt: skip
    finally:
        gw.terminate()
        gw.wait(10)


async def run(counts: list[int], body: bytes) -> list[dict[str, object]]:
    sim_port = free_port()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sim = spawn(["sim", "--port", str(sim_port)], tmp / "sim.log")
        try:
            sim_url = f"http://127.0.0.1:{sim_port}/v1"
            await wait_ready(sim_url + "/models", sim)
            print(f"body: {len(body) / 2**20:.1f} MiB per request")
            print(f"{'at once':>8} {'RSS before':>11} {'peak RSS':>9}  statuses")
            rows = []
            for count in counts:
                row = await measure(count, body, sim_url, tmp)
                rows.append(row)
                print(f"{count:>8} {row['rss_before_mb']:>9.0f} MB {row['peak_mb']:>6.0f} MB  "
                      f"{row['statuses']}")  # fmt: skip
        finally:
            sim.terminate()
            sim.wait(10)
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 3, 10])
    ap.add_argument("--mib", type=float, default=19.0, help="image size per request (MiB)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    body = body_of(args.mib)
    rows = asyncio.run(run(args.counts, body))
    if args.json:
        Path(args.json).write_text(json.dumps({"body_bytes": len(body), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
