"""The non-streaming load of run.py: the load tool (wrk, else hey, else loadgen.py's closed
loop), one measured run of it against one path, and the CPU each process used meanwhile."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ops.bench.procfs import CpuWindow, Quiet
from ops.bench.procs import CLIENT_CORE, HERE, Children
from ops.bench.workload import CHAT_BODY


@dataclass
class LoadResult:
    target: str
    round: int
    tool: str
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: dict[str, int]
    duration_s: float
    server_cpu_ms_per_req: float | None = None
    server_busy: float | None = None  # share of one core
    upstream_busy: float | None = None
    loadgen_busy: float | None = None
    foreign_busy: float | None = None
    foreign_top: list[tuple[str, float]] = field(default_factory=list)


class LoadTool:
    def __init__(self, kind: str, children: Children, python: str, connections: int) -> None:
        self.kind = kind
        self.children = children
        self.python = python
        self.connections = connections

    @staticmethod
    def pick(wanted: str) -> str:
        if wanted != "auto":
            if wanted != "python" and shutil.which(wanted) is None:
                raise SystemExit(f"--loadgen {wanted}: not found on PATH")
            return wanted
        for tool in ("wrk", "hey"):
            if shutil.which(tool):
                return tool
        return "python"

    def version(self) -> str:
        if self.kind == "wrk":
            out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).split("Copyright")[0].strip()
        if self.kind == "hey":
            return "hey"
        return "ops/bench/loadgen.py (aiohttp)"

    def run(self, url: str, seconds: int) -> dict[str, Any]:
        timeout = seconds + 40
        if self.kind == "wrk":
            argv = ["wrk", "-t1", f"-c{self.connections}", f"-d{seconds}s", "--timeout", "5s"]
            argv += ["-s", str(HERE / "post.lua"), url]
            env = {**os.environ, "BENCH_BODY": CHAT_BODY}
            rc, out, err = self.children.run(argv, CLIENT_CORE, timeout, env)
            line = next((ln for ln in out.splitlines() if ln.startswith("BENCH-JSON ")), None)
            if rc != 0 or line is None:
                raise RuntimeError(f"wrk failed (rc {rc}):\n{out}\n{err}")
            r = json.loads(line.removeprefix("BENCH-JSON "))
            errors = {k: v for k, v in r["errors"].items() if v}
            duration = r["duration_us"] / 1e6
            ok = r["requests"] - r["errors"]["status"]
            return {
                "ok": ok,
                "rps": ok / duration,
                "p50_ms": r["p50_us"] / 1000,
                "p99_ms": r["p99_us"] / 1000,
                "errors": errors,
                "duration_s": duration,
            }
        if self.kind == "hey":
            argv = ["hey", "-z", f"{seconds}s", "-c", str(self.connections), "-cpus", "1"]
            argv += ["-m", "POST", "-T", "application/json", "-d", CHAT_BODY, "-t", "5", url]
            rc, out, err = self.children.run(argv, CLIENT_CORE, timeout)
            if rc != 0:
                raise RuntimeError(f"hey failed (rc {rc}):\n{out}\n{err}")
            return parse_hey(out)
        argv = [self.python, "-m", "ops.bench.loadgen", "closed", "--url", url, "--body", CHAT_BODY]
        argv += ["--connections", str(self.connections), "--warmup", "0"]
        argv += ["--duration", str(seconds)]
        rc, out, err = self.children.run(argv, CLIENT_CORE, timeout)
        if rc != 0:
            raise RuntimeError(f"loadgen failed (rc {rc}):\n{out}\n{err}")
        r = json.loads(out)
        errors = dict(r["errors"])
        for status, n in r["statuses"].items():
            if status != "200":
                errors[f"status {status}"] = n
        return {
            "ok": r["ok"],
            "rps": r["rps"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
            "errors": errors,
            "duration_s": r["duration_s"],
        }


def parse_hey(out: str) -> dict[str, Any]:
    def secs(pattern: str) -> float:
        m = re.search(pattern, out)
        if m is None:
            raise RuntimeError(f"cannot read hey's output ({pattern!r}):\n{out}")
        return float(m.group(1))

    statuses = {int(s): int(n) for s, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = {f"status {s}": n for s, n in statuses.items() if s != 200}
    err_block = out.split("Error distribution:", 1)
    if len(err_block) == 2:
        for n, what in re.findall(r"\[(\d+)\]\s+(.+)", err_block[1]):
            errors[what.strip()[:60]] = int(n)
    ok = statuses.get(200, 0)
    total_s = secs(r"Total:\s+([\d.]+) secs")
    return {
        "ok": ok,
        "rps": ok / total_s,
        "p50_ms": secs(r"50%+ in ([\d.]+) secs") * 1000,
        "p99_ms": secs(r"99%+ in ([\d.]+) secs") * 1000,
        "errors": errors,
        "duration_s": total_s,
    }


def measure_load(
    tool: LoadTool,
    children: Children,
    target: str,
    rnd: int,
    url: str,
    server_pid: int,
    upstream_pid: int | None,
    warmup_s: int,
    duration_s: int,
    quiet: Quiet,
) -> LoadResult:
    quiet.wait(children.pids())
    if warmup_s > 0:
        tool.run(url, warmup_s)
    watch = {"server": server_pid}
    if upstream_pid is not None:
        watch["upstream"] = upstream_pid
    win = CpuWindow(watch).start()
    r = tool.run(url, duration_s)
    win.stop(children.pids())
    wall = win.wall_s
    res = LoadResult(
        target=target,
        round=rnd,
        tool=tool.kind,
        rps=r["rps"],
        p50_ms=r["p50_ms"],
        p99_ms=r["p99_ms"],
        ok=r["ok"],
        errors=r["errors"],
        duration_s=r["duration_s"],
        server_busy=win.used["server"] / wall,
        upstream_busy=win.used["upstream"] / wall if upstream_pid is not None else None,
        loadgen_busy=win.loadgen_s / wall,
        foreign_busy=win.foreign_s / wall,
        foreign_top=win.foreign_top,
    )
    if r["ok"]:
        res.server_cpu_ms_per_req = win.used["server"] * 1000 / r["ok"]
    return res
