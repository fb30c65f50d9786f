"""run.py --profile: Turnout and the pass-through under the benchmark's load, profiled with
py-spy (collapsed stacks, idle samples out) or else cProfile, and the report of where the CPU
goes."""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from ops.bench.loadtool import LoadResult, LoadTool
from ops.bench.net import LOOPBACK, free_port
from ops.bench.procfs import Quiet
from ops.bench.procs import REPO, SERVER_CORE, Children, end_process, wait_listening


def run_profile(
    args: argparse.Namespace,
    children: Children,
    tool: LoadTool,
    python: str,
    tmp: Path,
    load_targets: dict[str, tuple[str, int, int | None]],
    chosen: dict[str, LoadResult],
) -> str:
    """Profile the pass-through and Turnout in turn under the non-streaming load; the report."""
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
        end_process(spy, 2)
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
    ("Turnout's own code", r"\((gateway|health|policies)/|\(<string>\)|\(uuid\.py\)"),
    ("tenacity, pybreaker (+ inspect)", r"\((tenacity|pybreaker)/|\(inspect\.py\)"),
    ("aiohttp (+ multidict, yarl)", r"\((aiohttp|multidict|yarl|propcache|aiohappyeyeballs)/"),
    ("event loop, native (uvloop, syscalls)", r"^Runner\.run "),
    ("asyncio (Python part)", r"\(asyncio/"),
    ("pass-through handler", r"\(.*passthrough\.py\)"),
)


def categorize(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    """Samples by where the innermost frame is. Native code (orjson, llhttp, uvloop) counts
    for the Python frame that called it; frozen dataclass __init__s (<string>) and uuid are
    counted as Turnout's own, since the pass-through has none. "other" is the rest of the
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
    sy = profiles.get("turnout")
    if sy:
        total = totals["turnout"]
        self_n: Counter[str] = Counter()
        incl_n: Counter[str] = Counter()
        for frames, n in sy.items():
            if frames:
                self_n[frames[-1]] += n
            for f in set(frames):
                incl_n[f] += n
        lines.append("Turnout, hottest functions by self time (native callees included):")
        for f, n in self_n.most_common(top):
            lines.append(f"  {100 * n / total:6.1f}%  {f}")
        lines.append("Turnout code by inclusive time (with everything it calls):")
        ours = [(f, n) for f, n in incl_n.most_common() if OURS.search(f)]
        skip = re.compile(r"^(main|run|cmd_serve|<module>) ")
        for f, n in [(f, n) for f, n in ours if not skip.match(f)][:top]:
            lines.append(f"  {100 * n / total:6.1f}%  {f}")
    return "\n".join(lines)


def _frame(frame: str) -> str:
    """'handle (gateway/pipeline/proxy.py:52)' -> 'handle (gateway/pipeline/proxy.py)', paths shortened."""
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
    children.start("turnout-cprofile", argv, SERVER_CORE)
    wait_listening(children, "turnout-cprofile", port)
    tool.run(f"http://{LOOPBACK}:{port}/v1/chat/completions", seconds)
    children.stop("turnout-cprofile", grace_s=15)
    if not out.exists():
        return "cProfile produced no output"
    stream = io.StringIO()
    stats = pstats.Stats(str(out), stream=stream)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(r"(gateway|health|policies)/", 18)
    return stream.getvalue()
