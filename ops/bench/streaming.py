"""The streaming measurement of run.py: loadgen.py's open-loop streaming client against every
path at once (interleaved), time to first token and total time per path, proxy CPU per stream."""

from __future__ import annotations

import json
from typing import Any

from ops.bench.procfs import CpuWindow, Quiet
from ops.bench.procs import CLIENT_CORE, Children
from ops.bench.stats import percentile
from ops.bench.workload import STREAM_BODY


def measure_stream(
    children: Children,
    python: str,
    urls: dict[str, str],
    proxies: dict[str, int],
    rate: float,
    warmup_s: float,
    duration_s: float,
    arrivals: str,
    quiet: Quiet,
) -> dict[str, Any]:
    quiet.wait(children.pids())
    argv = [python, "-m", "ops.bench.loadgen", "stream", "--body", STREAM_BODY]
    argv += ["--rate", str(rate), "--warmup", str(warmup_s), "--duration", str(duration_s)]
    argv += ["--arrivals", arrivals]
    for name, url in urls.items():
        argv += ["--target", f"{name}={url}"]
    win = CpuWindow(dict(proxies)).start()
    rc, out, err = children.run(argv, CLIENT_CORE, warmup_s + duration_s + 60)
    win.stop(children.pids())
    if rc != 0:
        raise RuntimeError(f"stream client failed (rc {rc}):\n{out}\n{err}")
    raw = json.loads(out)
    sent = round((warmup_s + duration_s) * rate)
    result: dict[str, Any] = {
        "rate": rate,
        "duration_s": duration_s,
        "max_start_lag_ms": raw["max_start_lag_ms"],
        "foreign_busy": win.foreign_s / win.wall_s,
        "foreign_top": win.foreign_top,
        "paths": {},
    }
    for name, t in raw["targets"].items():
        if not t["n"]:
            raise RuntimeError(f"stream via {name}: no successful request ({t['errors']})")
        row = {
            "n": t["n"],
            "errors": t["errors"],
            "ttft_p50_ms": percentile(t["ttft_ms"], 50),
            "ttft_p99_ms": percentile(t["ttft_ms"], 99),
            "total_p50_ms": percentile(t["total_ms"], 50),
            "total_p99_ms": percentile(t["total_ms"], 99),
        }
        if name in proxies:
            row["cpu_ms_per_req"] = win.used[name] * 1000 / sent
        result["paths"][name] = row
    direct = result["paths"]["direct"]
    for name, row in result["paths"].items():
        if name != "direct":
            for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms"):
                row["added_" + k] = row[k] - direct[k]
    return result
