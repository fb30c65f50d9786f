"""Switchyard's reproducible benchmark: direct vs a minimal pass-through vs Switchyard.

    .venv/bin/python ops/bench/run.py            # full run, about 3 minutes
    .venv/bin/python ops/bench/run.py --quick    # about 40 seconds
    .venv/bin/python ops/bench/run.py --json out.json --profile

Everything is measured in the one run, on loopback only, against upstreams this script
starts itself (see README.md beside this file for what is measured and how to read it).
Every child process is killed on exit, Ctrl-C, error or the overall time limit.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE, CLIENT_CORE = 0, 1

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


# ---- child processes -------------------------------------------------------------------------


class Children:
    """Every process this script starts, so that all of them are ended on any exit."""

    def __init__(self, logdir: Path, pin: bool, nice: int = 0) -> None:
        self.logdir = logdir
        self.pin = pin
        self.nice = nice
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.others: list[subprocess.Popen[bytes]] = []

    def argv(self, argv: list[str], core: int | None) -> list[str]:
        if self.nice and core is not None:  # not for helpers such as the profiler
            argv = ["nice", "-n", str(self.nice), *argv]
        if self.pin and core is not None:
            argv = ["taskset", "-c", str(core), *argv]
        return argv

    def start(self, name: str, argv: list[str], core: int | None) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            self.argv(argv, core),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # Ctrl-C reaches us only; we end the children ourselves
        )
        log.close()
        self.procs[name] = proc
        return proc

    def run(
        self, argv: list[str], core: int | None, timeout: float, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Run a bounded helper (load tool, profiler) to completion; return (rc, out, err)."""
        proc = subprocess.Popen(
            self.argv(argv, core),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.others.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
        finally:
            if proc.poll() is None:  # timed out, interrupted or aborted: end it now
                _end(proc, 1.0)
            self.others.remove(proc)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def spawn(self, argv: list[str], core: int | None, out: Path) -> subprocess.Popen[bytes]:
        """Start a bounded helper in the background (ended by `stop_all` if still running)."""
        f = open(out, "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            self.argv(argv, core),
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        f.close()
        self.others.append(proc)
        return proc

    def pids(self) -> set[int]:
        return {p.pid for p in [*self.procs.values(), *self.others]}

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logdir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, name: str, grace_s: float = 5.0) -> int | None:
        proc = self.procs.pop(name)
        _end(proc, grace_s)
        return proc.returncode

    def stop_all(self) -> None:
        procs = [*self.others, *reversed(self.procs.values())]
        self.others, self.procs = [], {}
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.terminate()  # by pid: these are processes we started
        deadline = time.monotonic() + 5
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=2)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if this script dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _end(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_listening(children: Children, name: str, port: int, timeout_s: float = 20.0) -> None:
    proc = children.procs[name]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{children.log_tail(name)}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout_s:.0f} s")


# ---- CPU accounting from /proc ---------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(command name, utime + stime in clock ticks) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_s(pid: int) -> float:
    st = proc_stat(pid)
    if st is None:
        raise RuntimeError(f"process {pid} is gone")
    return st[1] / CLK_TCK


def all_procs() -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


class Quiet:
    """Waits (within a total budget) for other processes to stop using the CPU before a
    measured run: this machine may be shared, and a busy neighbour slows every path."""

    def __init__(self, budget_s: float, threshold: float = 0.10) -> None:
        self.budget_s = budget_s
        self.threshold = threshold  # share of one core used by processes not ours
        self.waited_s = 0.0

    def wait(self, ours: set[int]) -> None:
        ours = ours | {os.getpid()}
        while True:
            t0, a = time.monotonic(), all_procs()
            time.sleep(0.5)
            b, wall = all_procs(), time.monotonic() - t0
            busy = sum(
                ticks - (a[pid][1] if pid in a and a[pid][0] == comm else 0)
                for pid, (comm, ticks) in b.items()
                if pid not in ours
            )
            if busy / CLK_TCK / wall <= self.threshold or self.waited_s >= self.budget_s:
                return
            self.waited_s += wall


@dataclass
class CpuWindow:
    """CPU used by chosen processes, by finished children (the load tool) and by everything
    else on the machine, between `start()` and `stop()`."""

    watch: dict[str, int]
    t0: float = 0.0
    wall_s: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    _children0: float = 0.0
    _all0: dict[int, tuple[str, int]] = field(default_factory=dict)
    foreign_s: float = 0.0
    foreign_top: list[tuple[str, float]] = field(default_factory=list)
    loadgen_s: float = 0.0

    def start(self) -> CpuWindow:
        self._all0 = all_procs()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._children0 = ru.ru_utime + ru.ru_stime
        self.before = {k: cpu_s(pid) for k, pid in self.watch.items()}
        self.t0 = time.monotonic()
        return self

    def stop(self, ours: set[int]) -> CpuWindow:
        self.wall_s = time.monotonic() - self.t0
        self.used = {k: cpu_s(pid) - self.before[k] for k, pid in self.watch.items()}
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.loadgen_s = ru.ru_utime + ru.ru_stime - self._children0
        ours = ours | {os.getpid()}
        by_name: dict[str, float] = defaultdict(float)
        for pid, (comm, ticks) in all_procs().items():
            if pid in ours:
                continue
            start = self._all0.get(pid)
            delta = ticks - (start[1] if start is not None and start[0] == comm else 0)
            if delta > 0:
                by_name[comm] += delta / CLK_TCK
        self.foreign_s = sum(by_name.values())
        top = sorted(by_name.items(), key=lambda kv: -kv[1])[:3]
        self.foreign_top = [(k, round(v, 2)) for k, v in top]
        return self


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


def check_json(name: str, url: str, switchyard: bool) -> None:
    status, headers, body = post(url, CHAT_BODY)
    content = json.loads(body)["choices"][0]["message"]["content"]
    if status != 200 or not content:
        raise RuntimeError(f"{name}: unexpected answer {status} {body[:200]!r}")
    if switchyard and "x-switchyard-target" not in headers:
        raise RuntimeError(f"{name}: no x-switchyard-target header: {headers}")


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


# ---- profiling -------------------------------------------------------------------------------


def find_py_spy(python: str) -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(python).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


def profile_py_spy(
    children: Children, tool: LoadTool, py_spy: str, pid: int, url: str, seconds: int, out: Path
) -> Counter[tuple[str, ...]] | str:
    """Sample `pid` with py-spy while the load tool drives `url`; the collapsed stacks are
    kept in `out`. Returns the stacks, or an error message."""
    spy_log = out.with_suffix(".log")
    argv = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    argv += ["--duration", str(max(1, seconds - 1)), "--output", str(out)]
    spy = children.spawn(argv, None, spy_log)
    time.sleep(0.5)
    tool.run(url, seconds)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _end(spy, 2)
    if spy.returncode != 0 or not out.exists():
        return f"py-spy failed (rc {spy.returncode}):\n{spy_log.read_text(errors='replace')}"
    spy_log.unlink(missing_ok=True)
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit() and not IDLE.search(stack.rsplit(";", 1)[-1]):
            stacks[tuple(_frame(f) for f in stack.split(";"))] += int(count)
    return stacks


# py-spy counts a thread pool worker blocked on its empty queue as busy (its wait is a Python
# frame): ~40 % of the samples under load here. It uses no CPU: leave it out of the shares.
IDLE = re.compile(r"_worker \(concurrent/futures/thread\.py:8[01]\)")


OURS = re.compile(r"\((gateway|health|policies)/")
CATEGORIES = (
    # (label, pattern on the innermost frame); first match wins
    ("Switchyard's own code", r"\((gateway|health|policies)/|\(<string>\)|\(uuid\.py\)"),
    ("tenacity, pybreaker (+ inspect)", r"\((tenacity|pybreaker)/|\(inspect\.py\)"),
    ("aiohttp (+ multidict, yarl)", r"\((aiohttp|multidict|yarl|propcache|aiohappyeyeballs)/"),
    ("event loop, native (uvloop, syscalls)", r"^Runner\.run "),
    ("asyncio (Python part)", r"\(asyncio/"),
    ("pass-through handler", r"\(.*passthrough\.py\)"),
)


def categorize(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    """Samples by where the innermost frame is. Native code (orjson, llhttp, uvloop) counts
    for the Python frame that called it; frozen dataclass __init__s (<string>) and uuid are
    counted as Switchyard's own, since the pass-through has none. "other" is the rest of the
    standard library (random, dataclasses, weakref, ...)."""
    out: Counter[str] = Counter()
    for frames, n in stacks.items():
        leaf = frames[-1] if frames else ""
        label = next((lab for lab, pat in CATEGORIES if re.search(pat, leaf)), "other")
        out[label] += n
    return out


def profile_report(
    profiles: dict[str, Counter[tuple[str, ...]]], cpu_ms: dict[str, float | None], top: int = 15
) -> str:
    lines = ["Where the CPU goes (share of samples; µs/req = share x measured CPU ms/req):"]
    cats = {name: categorize(st) for name, st in profiles.items()}
    totals = {name: sum(st.values()) for name, st in profiles.items()}
    labels = [lab for lab, _ in CATEGORIES if any(c[lab] for c in cats.values())] + ["other"]
    head = f"  {'':40}" + "".join(f" {name:>24}" for name in profiles)
    lines.append(head)
    for lab in labels:
        row = f"  {lab:40}"
        for name in profiles:
            share = cats[name][lab] / totals[name] if totals[name] else 0.0
            ms = cpu_ms.get(name)
            us = f"{share * ms * 1000:5.0f} µs" if ms else ""
            row += f" {100 * share:8.1f}% {us:>14}"
        lines.append(row)
    lines.append("  " + ", ".join(f"{n}: {t} samples" for n, t in totals.items()))
    sy = profiles.get("switchyard")
    if sy:
        total = totals["switchyard"]
        self_n: Counter[str] = Counter()
        incl_n: Counter[str] = Counter()
        for frames, n in sy.items():
            if frames:
                self_n[frames[-1]] += n
            for f in set(frames):
                incl_n[f] += n
        lines.append("Switchyard, hottest functions by self time (native callees included):")
        for f, n in self_n.most_common(top):
            lines.append(f"  {100 * n / total:6.1f}%  {f}")
        lines.append("Switchyard code by inclusive time (with everything it calls):")
        ours = [(f, n) for f, n in incl_n.most_common() if OURS.search(f)]
        skip = re.compile(r"^(main|run|cmd_serve|<module>) ")
        for f, n in [(f, n) for f, n in ours if not skip.match(f)][:top]:
            lines.append(f"  {100 * n / total:6.1f}%  {f}")
    return "\n".join(lines)


def _frame(frame: str) -> str:
    """'handle (gateway/proxy.py:52)' -> 'handle (gateway/proxy.py)', paths shortened."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if str(REPO) in path:
        path = os.path.relpath(path, REPO)
    return f"{func} ({path})"


CPROFILE_SERVE = """
import cProfile, sys
from gateway.cli import main
out = sys.argv.pop(1)
prof = cProfile.Profile()
prof.enable()
try:
    main(sys.argv[1:])
finally:
    prof.disable()
    prof.dump_stats(out)
"""


def profile_cprofile(
    children: Children,
    tool: LoadTool,
    python: str,
    config: Path,
    seconds: int,
    out: Path,
) -> str:
    """Without py-spy: run a second gateway under cProfile (slower, but shows the shape)."""
    import pstats

    port = free_port()
    argv = [python, "-c", CPROFILE_SERVE, str(out), "serve", "-c", str(config)]
    argv += ["--host", LOOPBACK, "--port", str(port)]
    children.start("switchyard-cprofile", argv, SERVER_CORE)
    wait_listening(children, "switchyard-cprofile", port)
    tool.run(f"http://{LOOPBACK}:{port}/v1/chat/completions", seconds)
    children.stop("switchyard-cprofile", grace_s=15)
    if not out.exists():
        return "cProfile produced no output"
    stream = io.StringIO()
    stats = pstats.Stats(str(out), stream=stream)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(r"(gateway|health|policies)/", 18)
    return stream.getvalue()


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
    "direct-sim": "(a') direct → switchyard sim",
    "passthrough": "(b) aiohttp pass-through",
    "switchyard": "(c) Switchyard",
    "switchyard-notrace": "(c') Switchyard, traced",
}


def load_table(rows: list[LoadResult], show_round: bool) -> list[str]:
    head = f"{'':30} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10}"
    head += f" {'core0':>6} {'upstr':>6} {'loadgen':>7} {'other':>6}"
    out = [("round " if show_round else "") + head]
    for r in rows:
        label = LABELS.get(r.target, r.target)
        proxies = ("passthrough", "switchyard", "switchyard-notrace")
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
        const="switchyard-profile.txt",
        metavar="FILE",
        help="after measuring, profile Switchyard under load (py-spy if found, else cProfile) "
        "and keep the raw profile in FILE (default %(const)s)",
    )
    p.add_argument("--loadgen", default="auto", choices=["auto", "wrk", "hey", "python"])
    p.add_argument(
        "--upstream", default="tiny", choices=["tiny", "sim"], help="non-stream upstream"
    )
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=int, help="seconds per non-streaming run")
    p.add_argument("--warmup", type=int, help="warm-up seconds before each run")
    p.add_argument("--rounds", type=int, help="rounds of (direct, pass-through, Switchyard)")
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


def pick_python() -> str:
    """An interpreter that can import the gateway: this one, else the repo's venv."""
    code = "import gateway, aiohttp, uvloop, orjson"
    for python in (sys.executable, str(REPO / ".venv" / "bin" / "python")):
        if Path(python).exists():
            ok = subprocess.run([python, "-c", code], capture_output=True, timeout=60)
            if ok.returncode == 0:
                return python
    raise SystemExit("cannot import gateway: run with the project's venv python")


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


class Abort(Exception):
    pass


def _raise_abort(signum: int, _frame: object) -> None:
    raise Abort(f"stopped by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = pick_python()
    started = time.monotonic()
    affinity = os.sched_getaffinity(0)
    pin = not args.no_pin and shutil.which("taskset") is not None and {0, 1} <= affinity
    tmp = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    children = Children(tmp, pin, args.nice)
    atexit.register(children.stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _raise_abort)
    signal.alarm(args.time_limit)
    try:
        return run(args, python, children, tmp, pin, started)
    except (Abort, KeyboardInterrupt) as exc:
        print(f"\naborted: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        children.stop_all()
        if args.keep_logs:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


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
    write_config(tmp / "switchyard.yaml", ports["sy"], up_port)
    write_config(tmp / "switchyard-stream.yaml", ports["sy-s"], ports["sim-stream"])
    write_config(tmp / "switchyard-traced.yaml", ports["sy-nt"], up_port, tracing=True)
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
        "sy": ([*serve, "-c", str(tmp / "switchyard.yaml")], SERVER_CORE),
        "sy-nt": ([*serve, "-c", str(tmp / "switchyard-traced.yaml")], SERVER_CORE),
        "pt-s": ([*passthrough, "--upstream", up(ports["sim-stream"])], SERVER_CORE),
        "sy-s": ([*serve, "-c", str(tmp / "switchyard-stream.yaml")], SERVER_CORE),
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
        "switchyard": (up(ports["sy"]) + path, pids["sy"], pids[main_up]),
        "switchyard-notrace": (up(ports["sy-nt"]) + path, pids["sy-nt"], pids[main_up]),
    }
    stream_urls = {
        "direct": up(ports["sim-stream"]) + path,
        "passthrough": up(ports["pt-s"]) + path,
        "switchyard": up(ports["sy-s"]) + path,
    }
    for name, (url, _, _) in load_targets.items():
        check_json(name, url, switchyard=name == "switchyard")
    for name, url in stream_urls.items():
        check_stream(name, url)

    tiny_desc = "ops/bench/upstream.py (aiohttp low-level server, canned answer)"
    upstream_desc = tiny_desc if args.upstream == "tiny" else "switchyard sim, latency 0"
    if args.upstream == "sim":
        LABELS["direct"] = "(a) direct → switchyard sim"
        LABELS["direct-tiny"] = "(a') direct → bench upstream"
    header = [
        f"Switchyard benchmark — {info['date']} — commit {info['commit']}",
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
                _set_affinity(server_pid, SERVER_CORE)
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
                    _set_affinity(server_pid, CLIENT_CORE)
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
        {"passthrough": pids["pt-s"], "switchyard": pids["sy-s"]},
        args.stream_rate,
        1.0,
        args.stream_duration,
        args.arrivals,
        quiet,
    )

    chosen = {name: median_round(rs) for name, rs in results.items()}
    sy, pt = chosen["switchyard"], chosen["passthrough"]
    sy_s = stream["paths"]["switchyard"]
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
        f"  Switchyard rps / pass-through rps   {checks['rps_ratio']:6.2f}     "
        f"(target ≥ {TARGETS['rps_ratio']})   {verdict(passed['rps_ratio'])}",
        f"  Switchyard CPU per request          {fmt(checks['cpu_ms'], '6.3f')} ms  "
        f"(target ≤ {TARGETS['cpu_ms']})    {verdict(passed['cpu_ms'])}"
        f"   [pass-through: {fmt(pt.server_cpu_ms_per_req, '.3f')} ms]",
        f"  Switchyard added TTFT p50           {checks['ttft_p50_ms']:6.2f} ms  "
        f"(target ≤ {TARGETS['ttft_p50_ms']:g})      {verdict(passed['ttft_p50_ms'])}",
        f"  Switchyard added TTFT p99           {checks['ttft_p99_ms']:6.2f} ms  "
        f"(target ≤ {TARGETS['ttft_p99_ms']:g})      {verdict(passed['ttft_p99_ms'])}",
        f"  (pass-through for reference: rps {pt.rps:.0f}, added TTFT p50 "
        f"{stream['paths']['passthrough']['added_ttft_p50_ms']:.2f} ms, p99 "
        f"{stream['paths']['passthrough']['added_ttft_p99_ms']:.2f} ms)",
    ]
    nt = chosen.get("switchyard-notrace")
    if nt is not None and nt.server_cpu_ms_per_req and sy.server_cpu_ms_per_req:
        summary.append(
            f"  Tracing cost (every request's spans recorded, 200 kept for /ui) vs the default "
            f"(no span recorded): CPU {nt.server_cpu_ms_per_req:.3f} vs "
            f"{sy.server_cpu_ms_per_req:.3f} ms/req "
            f"(+{nt.server_cpu_ms_per_req - sy.server_cpu_ms_per_req:.3f} ms), "
            f"rps {nt.rps:.0f} vs {sy.rps:.0f} ({nt.rps / sy.rps:.2f}x)"
        )
    pairs = list(zip(results["passthrough"], results["switchyard"], strict=True))
    if len(pairs) > 1:
        by_round = ", ".join(f"{b.rps / a.rps:.2f}" for a, b in pairs)
        summary.append(
            f"  rps ratio in each round (pass-through and Switchyard back to back): {by_round}"
        )
    if sy.server_cpu_ms_per_req and pt.server_cpu_ms_per_req:
        summary += [
            f"  Switchyard CPU above the pass-through: "
            f"{sy.server_cpu_ms_per_req - pt.server_cpu_ms_per_req:.3f} ms/req non-streaming, "
            f"{sy_s['cpu_ms_per_req'] - stream['paths']['passthrough']['cpu_ms_per_req']:.3f} "
            f"ms per {STREAM_EVENTS}-event stream",
            f"  CPU-based throughput ratio (pass-through CPU/req ÷ Switchyard CPU/req) "
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
        text = profile_cprofile(children, tool, python, tmp / "switchyard.yaml", seconds, out)
        return (
            f"Profile of Switchyard under the non-streaming load — cProfile (py-spy not "
            f"found; pip install py-spy for a sampling profile), stats in {out}:\n{text}"
        )
    profiles: dict[str, Counter[tuple[str, ...]]] = {}
    files = {"passthrough": out.with_name(out.stem + "-passthrough" + out.suffix)}
    files["switchyard"] = out
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
        f"(collapsed stacks: {files['switchyard']}, {files['passthrough']}):\n"
        + profile_report(profiles, cpu)
    )


def _set_affinity(pid: int, core: int) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {core})


if __name__ == "__main__":
    sys.exit(main())
