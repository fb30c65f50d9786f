"""Turnout's reproducible benchmark: direct vs a minimal pass-through vs Turnout.

    .venv/bin/python ops/bench/run.py            # full run, about 3 minutes
    .venv/bin/python ops/bench/run.py --quick    # about 40 seconds
    .venv/bin/python ops/bench/run.py --json out.json --profile

Everything is measured in the one run, on loopback only, against upstreams this script
starts itself (see README.md beside this file for what is measured and how to read it).
Every child process is killed on exit, Ctrl-C, error or the overall time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import (
    CLIENT_CORE,
    HERE,
    LOOPBACK,
    REPO,
    SERVER_CORE,
    Children,
    CpuWindow,
    Quiet,
    free_port,
    pick_python,
    set_affinity,
    supervised,
    wait_listening,
)
from profiling import (
    find_py_spy,
    profile_cprofile,
    profile_py_spy,
    profile_report,
)

CHAT = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
}
CHAT_BODY = json.dumps(CHAT, separators=(",", ":"))
STREAM_BODY = json.dumps({**CHAT, "stream": True}, separators=(",", ":"))
# The streaming upstream: headers after 50 ms, then 20 events 10 ms apart (a role event,
# "[bench]", 16 words, ".", a finish event), then [DONE]. The sim's latency delays the
# response headers; the first *content* event comes one interval after them.
STREAM_SIM = ("--latency-ms", "50", "--chunk-interval-ms", "10", "--words", "16")
STREAM_EVENTS = 20

TARGETS = {"rps_ratio": 0.66, "cpu_ms": 0.3, "ttft_p50_ms": 1.0, "ttft_p99_ms": 3.0}


# ---- non-streaming load ---------------------------------------------------------------------


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
            return _parse_hey(out)
        argv = [self.python, str(HERE / "loadgen.py"), "closed", "--url", url, "--body", CHAT_BODY]
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


def _parse_hey(out: str) -> dict[str, Any]:
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


# ---- sanity checks ---------------------------------------------------------------------------


# No proxy from the environment: these requests go to loopback only.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url: str, body: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with _OPENER.open(req, timeout=timeout) as resp:  # loopback only
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def check_json(name: str, url: str, turnout: bool) -> None:
    status, headers, body = post(url, CHAT_BODY)
    content = json.loads(body)["choices"][0]["message"]["content"]
    if status != 200 or not content:
        raise RuntimeError(f"{name}: unexpected answer {status} {body[:200]!r}")
    if turnout and "x-turnout-target" not in headers:
        raise RuntimeError(f"{name}: no x-turnout-target header: {headers}")


def check_stream(name: str, url: str) -> None:
    status, _, body = post(url, STREAM_BODY)
    events = [e for e in body.split(b"\n\n") if e.strip()]
    if status != 200 or events[-1:] != [b"data: [DONE]"] or len(events) != STREAM_EVENTS + 1:
        raise RuntimeError(f"{name}: unexpected stream ({len(events)} events): {body[:300]!r}")


# ---- streaming -----------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))
    return ordered[int(rank)]


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
    argv = [python, str(HERE / "loadgen.py"), "stream", "--body", STREAM_BODY]
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
            "ttft_p50_ms": pct(t["ttft_ms"], 50),
            "ttft_p99_ms": pct(t["ttft_ms"], 99),
            "total_p50_ms": pct(t["total_ms"], 50),
            "total_p99_ms": pct(t["total_ms"], 99),
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


# ---- reporting -------------------------------------------------------------------------------


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def pctf(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


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


def _versions(python: str) -> dict[str, str]:
    code = (
        "import json, platform, aiohttp, uvloop, orjson; print(json.dumps({'python': "
        "platform.python_version(), 'aiohttp': aiohttp.__version__, 'uvloop': "
        "uvloop.__version__, 'orjson': orjson.__version__}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    return dict(json.loads(out.stdout))


def machine_info(python: str) -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        if dirty:
            commit += " (+ uncommitted changes)"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        **_versions(python),
        "commit": commit,
    }


# ---- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short run (about 40 s)")
    p.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    p.add_argument(
        "--profile",
        nargs="?",
        const="turnout-profile.txt",
        metavar="FILE",
        help="after measuring, profile Turnout under load (py-spy if found, else cProfile) "
        "and keep the raw profile in FILE (default %(const)s)",
    )
    p.add_argument("--loadgen", default="auto", choices=["auto", "wrk", "hey", "python"])
    p.add_argument(
        "--upstream", default="tiny", choices=["tiny", "sim"], help="non-stream upstream"
    )
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=int, help="seconds per non-streaming run")
    p.add_argument("--warmup", type=int, help="warm-up seconds before each run")
    p.add_argument("--rounds", type=int, help="rounds of (direct, pass-through, Turnout)")
    p.add_argument("--stream-rate", type=float, default=20.0, help="streams per second per path")
    p.add_argument(
        "--arrivals",
        choices=["fixed", "poisson"],
        default="fixed",
        help="streaming arrivals: exactly 1/rate apart (default) or a seeded Poisson process",
    )
    p.add_argument("--stream-duration", type=float, help="seconds of streaming per path")
    p.add_argument(
        "--wait-quiet",
        type=float,
        help="before each run, wait while other processes use >10%% of a core, at most this "
        "many seconds in all (default 20, quick 10; 0 = never wait)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run every benchmark process with this niceness (e.g. -10, needs root): on a "
        "shared machine it keeps neighbours from adding scheduling delay",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--time-limit", type=int, default=420, help="abort after this many seconds")
    p.add_argument("--py-spy", help="path to py-spy (default: PATH, then the venv)")
    p.add_argument("--strict", action="store_true", help="exit 3 if a target is missed")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    args = p.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3 if quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.rounds = args.rounds or (1 if quick else 3)
    args.stream_duration = args.stream_duration or (4.0 if quick else 10.0)
    if args.wait_quiet is None:
        args.wait_quiet = 10.0 if quick else 20.0
    return args


def write_config(path: Path, port: int, upstream_port: int, *, tracing: bool = False) -> None:
    # The default config records no span (no exporter, no /ui trace buffer); tracing on keeps
    # 200 traces for /ui, which records every request's spans with the OTel SDK.
    extra = "telemetry:\n  recent_traces: 200\n" if tracing else ""
    path.write_text(
        extra
        + f"""# generated by ops/bench/run.py: one provider, one route, defaults otherwise
server:
  host: {LOOPBACK}
  port: {port}
providers:
  bench-upstream:
    base_url: http://{LOOPBACK}:{upstream_port}/v1
routes:
  - alias: bench
    candidates: [bench-model@bench-upstream]
"""
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = pick_python()
    started = time.monotonic()
    return supervised(
        lambda children, tmp, pin: run(args, python, children, tmp, pin, started),
        what="bench",
        no_pin=args.no_pin,
        time_limit_s=args.time_limit,
        keep_logs=args.keep_logs,
        nice=args.nice,
    )


def run(
    args: argparse.Namespace,
    python: str,
    children: Children,
    tmp: Path,
    pin: bool,
    started: float,
) -> int:
    info = machine_info(python)
    tool = LoadTool(LoadTool.pick(args.loadgen), children, python, args.connections)
    info["load_tool"] = tool.version()
    ports = {
        n: free_port() for n in ("tiny", "sim", "sim-stream", "pt", "sy", "sy-nt", "pt-s", "sy-s")
    }
    up_port = ports["tiny"] if args.upstream == "tiny" else ports["sim"]
    write_config(tmp / "turnout.yaml", ports["sy"], up_port)
    write_config(tmp / "turnout-stream.yaml", ports["sy-s"], ports["sim-stream"])
    write_config(tmp / "turnout-traced.yaml", ports["sy-nt"], up_port, tracing=True)
    sim = [python, "-m", "gateway", "sim", "--host", LOOPBACK, "--name", "bench"]
    serve = [python, "-m", "gateway", "serve", "--host", LOOPBACK]
    passthrough = [python, str(HERE / "passthrough.py"), "--host", LOOPBACK]

    def up(port: int) -> str:
        return f"http://{LOOPBACK}:{port}"

    specs = {
        "tiny": ([python, str(HERE / "upstream.py"), "--host", LOOPBACK], CLIENT_CORE),
        "sim": (sim, CLIENT_CORE),
        "sim-stream": ([*sim, *STREAM_SIM], CLIENT_CORE),
        "pt": ([*passthrough, "--upstream", up(up_port)], SERVER_CORE),
        "sy": ([*serve, "-c", str(tmp / "turnout.yaml")], SERVER_CORE),
        "sy-nt": ([*serve, "-c", str(tmp / "turnout-traced.yaml")], SERVER_CORE),
        "pt-s": ([*passthrough, "--upstream", up(ports["sim-stream"])], SERVER_CORE),
        "sy-s": ([*serve, "-c", str(tmp / "turnout-stream.yaml")], SERVER_CORE),
    }
    for name, (argv, core) in specs.items():
        children.start(name, [*argv, "--port", str(ports[name])], core)
    for name in specs:
        wait_listening(children, name, ports[name])
    pids = {name: p.pid for name, p in children.procs.items()}

    path = "/v1/chat/completions"
    main_up = "tiny" if args.upstream == "tiny" else "sim"
    load_targets = {
        "direct": (up(up_port) + path, pids[main_up], None),
        "direct-sim" if args.upstream == "tiny" else "direct-tiny": (
            up(ports["sim" if args.upstream == "tiny" else "tiny"]) + path,
            pids["sim" if args.upstream == "tiny" else "tiny"],
            None,
        ),
        "passthrough": (up(ports["pt"]) + path, pids["pt"], pids[main_up]),
        "turnout": (up(ports["sy"]) + path, pids["sy"], pids[main_up]),
        "turnout-notrace": (up(ports["sy-nt"]) + path, pids["sy-nt"], pids[main_up]),
    }
    stream_urls = {
        "direct": up(ports["sim-stream"]) + path,
        "passthrough": up(ports["pt-s"]) + path,
        "turnout": up(ports["sy-s"]) + path,
    }
    for name, (url, _, _) in load_targets.items():
        check_json(name, url, turnout=name == "turnout")
    for name, url in stream_urls.items():
        check_stream(name, url)

    tiny_desc = "ops/bench/upstream.py (aiohttp low-level server, canned answer)"
    upstream_desc = tiny_desc if args.upstream == "tiny" else "turnout sim, latency 0"
    if args.upstream == "sim":
        LABELS["direct"] = "(a) direct → turnout sim"
        LABELS["direct-tiny"] = "(a') direct → bench upstream"
    header = [
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
    print("\n".join(header), flush=True)
    print(
        f"\nnon-streaming: POST {path}, {args.connections} connections, {args.warmup} s warm-up "
        f"+ {args.duration} s measured per run, {args.rounds} round(s)",
        flush=True,
    )

    quiet = Quiet(args.wait_quiet)
    results: dict[str, list[LoadResult]] = defaultdict(list)
    print("\n".join(load_table([], show_round=True)), flush=True)
    for rnd in range(1, args.rounds + 1):
        for name, (url, server_pid, upstream_pid) in load_targets.items():
            if name.startswith("direct-") and rnd > 1:
                continue  # the other upstream is a reference: one round is enough
            direct = name.startswith("direct")
            # For direct runs the upstream *is* the server under test; pin it to core 0
            # like the proxies (it is moved back to core 1 afterwards).
            if direct and pin:
                set_affinity(server_pid, SERVER_CORE)
            try:
                r = measure_load(
                    tool,
                    children,
                    name,
                    rnd,
                    url,
                    server_pid,
                    upstream_pid,
                    args.warmup,
                    args.duration,
                    quiet,
                )
            finally:
                if direct and pin:
                    set_affinity(server_pid, CLIENT_CORE)
            results[name].append(r)
            print("\n".join(load_table([r], show_round=True)[1:]), flush=True)

    print(
        f"\nstreaming: {args.stream_rate:g} req/s per path ({args.arrivals} arrivals), open "
        "loop, interleaved, 1 s warm-up "
        f"+ {args.stream_duration:g} s; upstream sends headers after 50 ms, then "
        f"{STREAM_EVENTS} events 10 ms apart",
        flush=True,
    )
    stream = measure_stream(
        children,
        python,
        stream_urls,
        {"passthrough": pids["pt-s"], "turnout": pids["sy-s"]},
        args.stream_rate,
        1.0,
        args.stream_duration,
        args.arrivals,
        quiet,
    )

    chosen = {name: median_round(rs) for name, rs in results.items()}
    sy, pt = chosen["turnout"], chosen["passthrough"]
    sy_s = stream["paths"]["turnout"]
    checks = {
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

    profile_text = None
    if args.profile:
        profile_text = run_profile(args, children, tool, python, tmp, pids, load_targets, chosen)
        summary += ["", profile_text]

    summary.append(
        f"\nwall time {time.monotonic() - started:.0f} s "
        f"(of which {quiet.waited_s:.0f} s waiting for other processes to go quiet)"
    )
    print("\n".join(summary), flush=True)

    failed = [r for rs in results.values() for r in rs if r.errors]
    failed_streams = [n for n, row in stream["paths"].items() if row["errors"]]
    if failed or failed_streams:
        print("\nSome requests failed (see ERRORS above): these numbers are not valid.")
    missed = [k for k, ok in passed.items() if not ok]
    if args.json:
        doc = {
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
                "chosen": {k: vars(v) for k, v in chosen.items()},
                "rounds": {k: [vars(r) for r in rs] for k, rs in results.items()},
            },
            "streaming": stream,
            "checks": checks,
            "targets": TARGETS,
            "passed": passed,
            "profile": profile_text,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    if failed or failed_streams:
        return 1
    return 3 if args.strict and missed else 0


def run_profile(
    args: argparse.Namespace,
    children: Children,
    tool: LoadTool,
    python: str,
    tmp: Path,
    pids: dict[str, int],
    load_targets: dict[str, tuple[str, int, int | None]],
    chosen: dict[str, LoadResult],
) -> str:
    out = Path(args.profile).resolve()
    py_spy = args.py_spy or find_py_spy(python)
    seconds = max(4, args.duration)
    quiet = Quiet(0)
    if not py_spy:
        out = out.with_suffix(".pstats")
        text = profile_cprofile(children, tool, python, tmp / "turnout.yaml", seconds, out)
        return (
            f"Profile of Turnout under the non-streaming load — cProfile (py-spy not "
            f"found; pip install py-spy for a sampling profile), stats in {out}:\n{text}"
        )
    profiles: dict[str, Counter[tuple[str, ...]]] = {}
    files = {"passthrough": out.with_name(out.stem + "-passthrough" + out.suffix)}
    files["turnout"] = out
    for name, path in files.items():
        url, pid, _ = load_targets[name]
        quiet.wait(children.pids())
        got = profile_py_spy(children, tool, py_spy, pid, url, seconds, path)
        if isinstance(got, str):
            return f"profile of {name} failed: {got}"
        profiles[name] = got
    cpu = {name: chosen[name].server_cpu_ms_per_req for name in profiles}
    return (
        f"Profile under the non-streaming load, {seconds} s each, py-spy at 250 Hz "
        f"(collapsed stacks: {files['turnout']}, {files['passthrough']}):\n"
        + profile_report(profiles, cpu)
    )


if __name__ == "__main__":
    sys.exit(main())
