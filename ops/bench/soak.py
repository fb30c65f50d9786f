"""Turnout's footprint: cold start, idle memory, and memory over a long run with failovers.

    .venv/bin/python ops/bench/soak.py                    # 200,000 requests (or 600 s)
    .venv/bin/python ops/bench/soak.py --quick            # 20,000 requests
    .venv/bin/python ops/bench/soak.py --requests 100000 --max-seconds 480

What it does, on loopback only, with processes it starts itself:

1. Cold start: spawns `turnout serve` --cold-starts times and measures process spawn →
   first `/readyz` 200 (polled every 5 ms), the resident memory at that moment, and SIGTERM →
   exit for the idle process. The last start is kept as the gateway under test.
2. Idle memory: VmRSS from /proc/<pid>/status after --idle-seconds with no traffic.
3. The soak: a separate client process (aiohttp, --connections connections, closed loop)
   sends --requests requests (or stops at --max-seconds, whichever comes first) to one route
   with two sim candidates, --stream-ratio of them streaming. Meanwhile a background thread
   flaps the primary sim (503 for --flap-down seconds every --flap-period seconds), so
   requests fail over and the primary's breaker trips and recovers. Every --sample-every
   completed requests the gateway's VmRSS is read and a row is printed.
4. The end: VmRSS right after the last request and after --settle-seconds idle; the growth
   from the sample at 25 % of the run to the end decides the verdict (flat or growing).

Every answer is checked: non-200 answers are counted by status; a 200 stream must end with
`data: [DONE]` or an in-band `event: error`; a 200 non-streaming answer must be JSON with
`choices`. Exit codes: 0 memory flat and every answer well-formed; 1 some answers broken or
connections failed; 3 memory not flat; 2 the soak could not run; 130 stopped. Every child
process is ended on exit, Ctrl-C, error or the overall time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import procs as bench  # noqa: E402 - ops/bench/procs.py: process handling shared with run.py

LOOPBACK = bench.LOOPBACK
SERVER_CORE, CLIENT_CORE = bench.SERVER_CORE, bench.CLIENT_CORE
ALIAS = "soak"
MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
CHAT_BODY = json.dumps({"model": ALIAS, "messages": MESSAGES}, separators=(",", ":"))
STREAM_BODY = json.dumps(
    {"model": ALIAS, "messages": MESSAGES, "stream": True}, separators=(",", ":")
)
# The verdict: memory is flat when it grew by at most this much from 25 % of the run to the end
# (whichever allowance is larger).
FLAT_MIB, FLAT_PCT = 2.0, 3.0


# ---- the client: a separate process, `soak.py client ...` -------------------------------------


async def client_run(args: argparse.Namespace) -> dict[str, Any]:
    """Closed-loop load: each connection sends its next request as soon as the previous answer
    is read. Prints a JSON progress line every `sample_every` completed requests."""
    import random

    import aiohttp

    json_headers = {"Content-Type": "application/json"}
    sse_headers = {**json_headers, "Accept": "text/event-stream"}
    non_stream, stream = CHAT_BODY.encode(), STREAM_BODY.encode()
    rng = random.Random(args.seed)
    statuses: Counter[str] = Counter()  # "<kind> <status>"
    exceptions: Counter[str] = Counter()
    checks: Counter[str] = Counter()  # stream endings and JSON answers
    targets: Counter[str] = Counter()
    state = {"next": 0, "done": 0, "errors": 0, "failovers": 0}
    start = time.perf_counter()
    stop_at = start + args.max_seconds

    def progress(final: bool = False) -> None:
        line: dict[str, Any] = {
            "done": state["done"],
            "t": round(time.perf_counter() - start, 3),
            "errors": state["errors"],
            "failovers": state["failovers"],
        }
        if final:
            line.update(
                final=True,
                stopped_by="time" if state["done"] < args.requests else "count",
                statuses=dict(statuses),
                exceptions=dict(exceptions),
                checks=dict(checks),
                targets=dict(targets),
            )
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def finish(kind: str, status: int, headers: Any, ok: bool) -> None:
        statuses[f"{kind} {status}"] += 1
        if status != 200 or not ok:
            state["errors"] += 1
        if status == 200:
            targets[headers.get("x-turnout-target", "?")] += 1
            if headers.get("x-turnout-attempts", "1") != "1":
                state["failovers"] += 1

    async def one(session: aiohttp.ClientSession, streaming: bool) -> None:
        kind = "stream" if streaming else "json"
        body, headers = (stream, sse_headers) if streaming else (non_stream, json_headers)
        async with session.post(args.url, data=body, headers=headers) as resp:
            if resp.status != 200 or not streaming:
                raw = await resp.read()
                ok = True
                if resp.status == 200:
                    try:
                        ok = bool(json.loads(raw).get("choices"))
                    except ValueError:
                        ok = False
                    checks["json ok" if ok else "json BROKEN"] += 1
                finish(kind, resp.status, resp.headers, ok)
                return
            tail = b""
            async for chunk in resp.content.iter_any():
                tail = (tail + chunk)[-2048:]
            last = tail.rstrip(b"\r\n").rsplit(b"\n\n", 1)[-1].lstrip(b"\r\n")
            if last == b"data: [DONE]":
                ending = "stream [DONE]"
            elif last.startswith(b"event: error"):
                ending = "stream in-band error"
            else:
                ending = "stream NO TERMINATOR"
            checks[ending] += 1
            finish(kind, 200, resp.headers, ending != "stream NO TERMINATOR")

    async def worker(session: aiohttp.ClientSession) -> None:
        while state["next"] < args.requests and time.perf_counter() < stop_at:
            state["next"] += 1
            streaming = rng.random() < args.stream_ratio
            try:
                await one(session, streaming)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                exceptions[type(exc).__name__] += 1
                state["errors"] += 1
            state["done"] += 1
            if state["done"] % args.sample_every == 0:
                progress()

    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        workers = [worker(session) for _ in range(args.connections)]
        await asyncio.wait_for(asyncio.gather(*workers), timeout=args.max_seconds + 40)
    progress(final=True)
    return state


def client_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="soak.py client")
    p.add_argument("--url", required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--max-seconds", type=float, required=True)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--stream-ratio", type=float, default=0.3)
    p.add_argument("--sample-every", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    host = args.url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        p.error(f"only loopback targets are allowed, got {args.url}")
    try:
        import uvloop

        uvloop.run(client_run(args))
    except ImportError:
        asyncio.run(client_run(args))
    except KeyboardInterrupt:
        return 130
    return 0


# ---- measuring the gateway process -------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (KiB) of a live process, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    if "VmRSS" not in out:
        raise RuntimeError(f"process {pid} is gone (no VmRSS)")
    return out


def rss_mib(pid: int) -> float:
    return proc_status(pid)["VmRSS"] / 1024


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(children: bench.Children, name: str, port: int, t0: float, limit_s: float) -> float:
    """Seconds from `t0` (just before spawning) to the first 200 from /readyz."""
    proc = children.procs[name]
    while time.monotonic() - t0 < limit_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{children.log_tail(name)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(port, "/readyz", timeout=1.0)
            if status == 200:
                return time.monotonic() - t0
        time.sleep(0.005)
    raise RuntimeError(f"{name} was not ready within {limit_s:.0f} s:\n{children.log_tail(name)}")


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def set_fault(port: int, fault: dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"http://{LOOPBACK}:{port}/_sim/fault",
        data=json.dumps(fault).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with _OPENER.open(req, timeout=5) as resp:
        resp.read()


class Flapper(threading.Thread):
    """Breaks the primary sim (503) for `down_s` every `period_s`, and meanwhile polls the
    gateway's /admin/targets to count breaker transitions (every 0.5 s, so a very quick
    open → half_open → open may be seen as one)."""

    def __init__(self, sim_port: int, gw_port: int, period_s: float, down_s: float) -> None:
        super().__init__(name="flapper", daemon=True)
        self.sim_port, self.gw_port = sim_port, gw_port
        self.period_s, self.down_s = period_s, down_s
        self.stop = threading.Event()
        self.outages = 0
        self.transitions: Counter[tuple[str, str]] = Counter()  # (target, to-state)
        self._seen: dict[str, Any] = {}
        self.problems: list[str] = []

    def run(self) -> None:
        start = time.monotonic()
        k = 0
        try:
            while not self.stop.is_set():
                # the outage k starts at (k + 0.5) * period and lasts down_s
                down_at = start + (k + 0.5) * self.period_s
                if not self._idle_until(down_at):
                    break
                set_fault(self.sim_port, {"mode": "status", "status": 503})
                self.outages += 1
                self._idle_until(down_at + self.down_s)
                set_fault(self.sim_port, {"mode": "ok"})
                k += 1
        except Exception as exc:  # report, never hang the run
            self.problems.append(f"flapper: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                set_fault(self.sim_port, {"mode": "ok"})

    def _idle_until(self, when: float) -> bool:
        """Poll breaker states until `when`; False if asked to stop."""
        while True:
            self._poll()
            left = when - time.monotonic()
            if left <= 0:
                return True
            if self.stop.wait(min(0.5, left)):
                return False

    def _poll(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            status, body = http_get(self.gw_port, "/admin/targets", timeout=2.0)
            if status != 200:
                return
            for t in json.loads(body)["data"]:
                last = t.get("last_transition")
                if last and self._seen.get(t["id"]) != last:
                    self._seen[t["id"]] = last
                    self.transitions[(t["id"], last["to"])] += 1


def foreign_ticks(ours: set[int]) -> dict[int, tuple[str, int]]:
    return {pid: st for pid, st in bench.all_procs().items() if pid not in ours}


def foreign_cpu_s(before: dict[int, tuple[str, int]], ours: set[int]) -> float:
    total = 0
    for pid, (comm, ticks) in foreign_ticks(ours).items():
        start = before.get(pid)
        total += ticks - (start[1] if start is not None and start[0] == comm else 0)
    return total / bench.CLK_TCK


# ---- the orchestrator ---------------------------------------------------------------------------


def write_config(
    path: Path, port: int, primary_port: int, secondary_port: int, open_s: float
) -> None:
    path.write_text(
        f"""# generated by ops/bench/soak.py: one route, two sim candidates, a short breaker
# open time (so that every outage trips the breaker and it recovers before the next one),
# defaults otherwise
server:
  host: {LOOPBACK}
  port: {port}
health:
  breaker:
    open_s: {open_s:g}
    open_max_s: {4 * open_s:g}
providers:
  sim-a:
    base_url: http://{LOOPBACK}:{primary_port}/v1
  sim-b:
    base_url: http://{LOOPBACK}:{secondary_port}/v1
routes:
  - alias: {ALIAS}
    candidates: [soak-model@sim-a, soak-model@sim-b]
"""
    )


def commit() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO), *argv],  # read-only
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return head + (" (+ uncommitted changes)" if dirty else "")
    return "?"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20,000 requests instead of 200,000")
    p.add_argument("--requests", type=int, help="requests in the soak (default 200000)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="soak time limit (600)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--stream-ratio", type=float, default=0.3, help="share streamed (0.3)")
    p.add_argument("--sample-every", type=int, help="requests per RSS sample (default: 1/40)")
    p.add_argument("--cold-starts", type=int, default=5, help="spawn → ready measurements (5)")
    p.add_argument("--idle-seconds", type=float, default=3.0, help="idle wait before idle RSS")
    p.add_argument("--settle-seconds", type=float, default=5.0, help="idle wait after the run")
    p.add_argument("--flap-period", type=float, default=10.0, help="primary outage every S s")
    p.add_argument("--flap-down", type=float, default=2.0, help="each outage lasts S s")
    p.add_argument(
        "--breaker-open-s",
        type=float,
        default=3.0,
        help="the breaker's open time (open_max_s is 4x); the gateway's default is 10, with "
        "which it stays open through most later outages (3)",
    )
    p.add_argument("--chunk-interval-ms", type=float, default=5.0, help="sims' stream pacing")
    p.add_argument("--words", type=int, default=16, help="words per sim answer")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    args = p.parse_args(argv)
    if args.requests is None:
        args.requests = 20_000 if args.quick else 200_000
    if args.sample_every is None:
        args.sample_every = max(100, args.requests // 40)
    if args.requests < 1 or args.cold_starts < 1 or not 0 <= args.stream_ratio <= 1:
        p.error("--requests and --cold-starts must be >= 1, --stream-ratio in [0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        return client_main(argv[1:])
    args = parse_args(argv)
    python = bench.pick_python()
    return bench.supervised(
        lambda children, tmp, pin: soak(args, python, children, tmp, pin),
        what="soak",
        no_pin=args.no_pin,
        time_limit_s=int(args.max_seconds + args.cold_starts * 25 + args.settle_seconds + 180),
        keep_logs=args.keep_logs,
    )


def soak(
    args: argparse.Namespace, python: str, children: bench.Children, tmp: Path, pin: bool
) -> int:
    started = time.monotonic()
    ports = {n: bench.free_port() for n in ("sim-a", "sim-b")}
    sim = [python, "-m", "gateway", "sim", "--host", LOOPBACK]
    sim += ["--chunk-interval-ms", f"{args.chunk_interval_ms:g}", "--words", str(args.words)]
    for name in ("sim-a", "sim-b"):
        children.start(name, [*sim, "--name", name, "--port", str(ports[name])], CLIENT_CORE)
    for name in ("sim-a", "sim-b"):
        bench.wait_listening(children, name, ports[name])
    config = tmp / "turnout.yaml"
    write_config(config, 0, ports["sim-a"], ports["sim-b"], args.breaker_open_s)

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(
        f"Turnout footprint soak — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — "
        f"commit {commit()}\nmachine: {cpu}, {os.cpu_count()} cores; Python "
        f"{sys.version.split()[0]}; "
        + (
            f"gateway pinned to core {SERVER_CORE}, sims + client to core {CLIENT_CORE}"
            if pin
            else "no pinning"
        ),
        flush=True,
    )

    # 1. cold starts; the last gateway stays up for the soak
    print(f"\n1. Cold start (spawn → /readyz 200), {args.cold_starts} runs:", flush=True)
    ready_s: list[float] = []
    ready_rss: list[float] = []
    stop_s: list[float] = []
    gw_port = 0
    for i in range(1, args.cold_starts + 1):
        gw_port = bench.free_port()
        name = f"gateway-{i}"
        argv = [python, "-m", "gateway", "serve", "-c", str(config)]
        argv += ["--host", LOOPBACK, "--port", str(gw_port)]
        t0 = time.monotonic()
        children.start(name, argv, SERVER_CORE)
        ready_s.append(wait_ready(children, name, gw_port, t0, 30.0))
        ready_rss.append(rss_mib(children.procs[name].pid))
        line = f"   run {i}: ready in {1000 * ready_s[-1]:6.0f} ms, RSS {ready_rss[-1]:5.1f} MiB"
        if i < args.cold_starts:
            t1 = time.monotonic()
            rc = children.stop(name, grace_s=15)
            stop_s.append(time.monotonic() - t1)
            line += f"; SIGTERM → exit {1000 * stop_s[-1]:5.0f} ms (rc {rc})"
        print(line, flush=True)
    gw_name = f"gateway-{args.cold_starts}"
    gw_pid = children.procs[gw_name].pid
    print(
        f"   ready: first {1000 * ready_s[0]:.0f} ms, median {1000 * statistics.median(ready_s):.0f}"
        f" ms, min {1000 * min(ready_s):.0f}, max {1000 * max(ready_s):.0f} ms"
        + (f"; idle stop median {1000 * statistics.median(stop_s):.0f} ms" if stop_s else ""),
        flush=True,
    )

    # 2. idle memory
    time.sleep(args.idle_seconds)
    idle = proc_status(gw_pid)
    print(
        f"\n2. Idle after start ({args.idle_seconds:g} s, no traffic): VmRSS "
        f"{idle['VmRSS'] / 1024:.1f} MiB (anon {idle.get('RssAnon', 0) / 1024:.1f}, file "
        f"{idle.get('RssFile', 0) / 1024:.1f}), VmHWM {idle['VmHWM'] / 1024:.1f} MiB",
        flush=True,
    )

    # 3. the soak
    url = f"http://{LOOPBACK}:{gw_port}/v1/chat/completions"
    print(
        f"\n3. Soak: {args.requests:,} requests (limit {args.max_seconds:g} s), "
        f"{args.connections} connections, {100 * args.stream_ratio:.0f} % streaming "
        f"({args.words} words, {args.chunk_interval_ms:g} ms between events); route "
        f"[sim-a, sim-b]; sim-a answers 503 for {args.flap_down:g} s every "
        f"{args.flap_period:g} s; breaker open_s {args.breaker_open_s:g} (max "
        f"{4 * args.breaker_open_s:g}); RSS read every {args.sample_every:,} requests",
        flush=True,
    )
    head = f"   {'requests':>9} {'elapsed s':>9} {'RSS MiB':>8} {'rps':>7} {'errors':>7}"
    head += f" {'failovers':>9}"
    print(head, flush=True)
    client_argv = [python, str(Path(__file__).resolve()), "client", "--url", url]
    client_argv += ["--requests", str(args.requests), "--max-seconds", str(args.max_seconds)]
    client_argv += ["--connections", str(args.connections)]
    client_argv += ["--stream-ratio", str(args.stream_ratio)]
    client_argv += ["--sample-every", str(args.sample_every)]
    ours = children.pids() | {os.getpid()}
    foreign0 = foreign_ticks(ours)
    sim_pids = {n: children.procs[n].pid for n in ("sim-a", "sim-b")}
    cpu0 = bench.cpu_s(gw_pid)
    sims0 = sum(bench.cpu_s(pid) for pid in sim_pids.values())
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    flapper = Flapper(ports["sim-a"], gw_port, args.flap_period, args.flap_down)
    with open(tmp / "client.log", "wb") as client_log:
        client = subprocess.Popen(
            children.argv(client_argv, CLIENT_CORE),
            stdout=subprocess.PIPE,
            stderr=client_log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
            preexec_fn=bench.die_with_parent,  # ends with us even if we are killed
        )
    children.others.append(client)
    t_start = time.monotonic()
    flapper.start()
    samples: list[dict[str, Any]] = [{"done": 0, "t": 0.0, "rss": rss_mib(gw_pid)}]
    final: dict[str, Any] | None = None
    assert client.stdout is not None
    try:
        for raw in client.stdout:
            msg = json.loads(raw)
            rss = rss_mib(gw_pid)
            if msg.get("final"):
                final = msg
                break
            prev = samples[-1]
            rps = (msg["done"] - prev["done"]) / max(1e-9, msg["t"] - prev["t"])
            samples.append({**msg, "rss": rss})
            print(
                f"   {msg['done']:9,} {msg['t']:9.1f} {rss:8.1f} {rps:7.0f} {msg['errors']:7,}"
                f" {msg['failovers']:9,}",
                flush=True,
            )
        client.wait(timeout=60)
    finally:
        flapper.stop.set()
        flapper.join(timeout=10)
    wall = time.monotonic() - t_start
    gw_cpu = bench.cpu_s(gw_pid) - cpu0
    sims_cpu = sum(bench.cpu_s(pid) for pid in sim_pids.values()) - sims0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client is the only child reaped
    client_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    foreign = foreign_cpu_s(foreign0, ours | {client.pid})
    if final is None or client.returncode != 0:
        err = (tmp / "client.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the client failed (rc {client.returncode}):\n{err}")
    end = proc_status(gw_pid)
    if samples[-1]["done"] != final["done"]:
        samples.append({**final, "rss": end["VmRSS"] / 1024})
    time.sleep(args.settle_seconds)
    settled = proc_status(gw_pid)
    if children.procs[gw_name].poll() is not None:
        raise RuntimeError(f"the gateway exited during the soak:\n{children.log_tail(gw_name)}")

    # 4. report
    done = final["done"]
    quarter = min(samples[1:] or samples, key=lambda s: abs(s["done"] - done / 4))
    end_mib, settled_mib = end["VmRSS"] / 1024, settled["VmRSS"] / 1024
    growth = end_mib - quarter["rss"]
    growth_pct = 100 * growth / quarter["rss"]
    flat = growth <= max(FLAT_MIB, quarter["rss"] * FLAT_PCT / 100)
    tail = [s for s in samples if s["done"] >= quarter["done"]]
    slope = _slope([s["done"] for s in tail], [s["rss"] for s in tail]) * 100_000
    print(
        f"   {'(end)':>9} {final['t']:9.1f} {end_mib:8.1f} {done / final['t']:7.0f}"
        f" {final['errors']:7,} {final['failovers']:9,}   (rps here = whole-run average)",
        flush=True,
    )

    statuses: dict[str, int] = final["statuses"]
    checks: dict[str, int] = final["checks"]
    non200 = {k: v for k, v in sorted(statuses.items()) if not k.endswith(" 200")}
    broken = sum(v for k, v in checks.items() if "BROKEN" in k or "NO TERMINATOR" in k)
    exceptions: dict[str, int] = final["exceptions"]
    streams = sum(v for k, v in statuses.items() if k.startswith("stream "))
    by_target = ", ".join(f"{k} {v:,}" for k, v in sorted(final["targets"].items()))
    trips = sorted(flapper.transitions.items())
    lines = [
        "",
        "4. Results",
        f"   requests: {done:,} in {final['t']:.1f} s ({done / final['t']:.0f}/s), stopped by "
        f"{final['stopped_by']}"
        + ("" if final["stopped_by"] == "count" else " LIMIT")
        + f"; {streams:,} streamed; answered by: {by_target}",
        f"   failovers (answers after more than one attempt): {final['failovers']:,}; primary "
        f"outages injected: {flapper.outages}",
        "   breaker transitions seen by polling /admin/targets every 0.5 s (every trip to open "
        "is seen, as a breaker stays open for seconds; the quick half_open → closed steps are "
        "undercounted): " + (", ".join(f"{t} → {to} x{n}" for (t, to), n in trips) or "none"),
        "   non-200 answers by status: "
        + (", ".join(f"{k}: {v:,}" for k, v in non200.items()) or "none"),
        "   answer checks: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(checks.items())),
        "   connection errors: "
        + (", ".join(f"{k}: {v:,}" for k, v in sorted(exceptions.items())) or "none"),
        f"   gateway CPU: {gw_cpu:.1f} s = {1000 * gw_cpu / max(1, done):.3f} ms/request, "
        f"{100 * gw_cpu / wall:.0f} % of a core; meanwhile the two sims used "
        f"{100 * sims_cpu / wall:.0f} %, the client {100 * client_cpu / wall:.0f} % and other "
        f"processes {100 * foreign / wall:.0f} % of a core",
        "",
        "Footprint summary",
        f"   cold start to ready:   median {1000 * statistics.median(ready_s):.0f} ms "
        f"(first {1000 * ready_s[0]:.0f} ms, range {1000 * min(ready_s):.0f}-"
        f"{1000 * max(ready_s):.0f} ms over {len(ready_s)} starts)",
        f"   RSS at ready:          median {statistics.median(ready_rss):.1f} MiB",
        f"   RSS idle after start:  {idle['VmRSS'] / 1024:.1f} MiB",
        f"   RSS at 25 % of run:    {quarter['rss']:.1f} MiB (after {quarter['done']:,} requests)",
        f"   RSS at end of run:     {end_mib:.1f} MiB (peak VmHWM {end['VmHWM'] / 1024:.1f} MiB)",
        f"   RSS after {args.settle_seconds:g} s idle:    {settled_mib:.1f} MiB",
        f"   growth 25 % → end:     {growth:+.2f} MiB ({growth_pct:+.1f} %); least-squares slope "
        f"over that span {slope:+.2f} MiB per 100k requests",
        f"   verdict: {'FLAT' if flat else 'GROWING'} (flat = growth ≤ {FLAT_MIB:g} MiB or ≤ "
        f"{FLAT_PCT:g} %, whichever is larger)",
    ]
    if final["stopped_by"] != "count":
        lines.append(
            f"   note: stopped by --max-seconds after {done:,} of {args.requests:,} requests"
        )
    lines += [f"   {p}" for p in flapper.problems]
    lines.append(f"\nwall time {time.monotonic() - started:.0f} s")
    print("\n".join(lines), flush=True)
    if broken or exceptions:
        print("\nSome answers were broken or connections failed (see above).")
        return 1
    return 0 if flat else 3


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


if __name__ == "__main__":
    sys.exit(main())
