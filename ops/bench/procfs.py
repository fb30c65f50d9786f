"""What the benches read from /proc (Linux): CPU time per process and for the whole machine,
memory from /proc/<pid>/status, the CPU model; and, built on them, `Quiet` (wait for other
processes to stop using the CPU) and `CpuWindow` (CPU used during a measured run)."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
MEMORY_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")

# pid -> (command name, utime + stime in clock ticks)
Ticks = dict[int, tuple[str, int]]


# ---- CPU -------------------------------------------------------------------------------------


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


def all_procs() -> Ticks:
    out: Ticks = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


def ticks_since(before: Ticks, pid: int, comm: str, ticks: int) -> int:
    """Ticks process `pid` used since `before` was read (all of them if it was not there then,
    or was another program under the same pid)."""
    start = before.get(pid)
    return ticks - (start[1] if start is not None and start[0] == comm else 0)


def foreign_ticks(ours: set[int]) -> Ticks:
    """CPU ticks of every process not in `ours`."""
    return {pid: st for pid, st in all_procs().items() if pid not in ours}


def foreign_cpu_s(before: Ticks, ours: set[int]) -> float:
    """CPU seconds used since `before` (from `foreign_ticks`) by processes not in `ours`."""
    total = sum(ticks_since(before, pid, c, t) for pid, (c, t) in foreign_ticks(ours).items())
    return total / CLK_TCK


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


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
                ticks_since(a, pid, comm, ticks)
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
    _all0: Ticks = field(default_factory=dict)
    foreign_s: float = 0.0
    foreign_top: list[tuple[str, float]] = field(default_factory=list)
    loadgen_s: float = 0.0

    def start(self) -> CpuWindow:
        self._all0 = all_procs()
        self._children0 = children_cpu_s()
        self.before = {k: cpu_s(pid) for k, pid in self.watch.items()}
        self.t0 = time.monotonic()
        return self

    def stop(self, ours: set[int]) -> CpuWindow:
        self.wall_s = time.monotonic() - self.t0
        self.used = {k: cpu_s(pid) - self.before[k] for k, pid in self.watch.items()}
        self.loadgen_s = children_cpu_s() - self._children0
        ours = ours | {os.getpid()}
        by_name: dict[str, float] = defaultdict(float)
        for pid, (comm, ticks) in all_procs().items():
            if pid in ours:
                continue
            delta = ticks_since(self._all0, pid, comm, ticks)
            if delta > 0:
                by_name[comm] += delta / CLK_TCK
        self.foreign_s = sum(by_name.values())
        top = sorted(by_name.items(), key=lambda kv: -kv[1])[:3]
        self.foreign_top = [(k, round(v, 2)) for k, v in top]
        return self


# ---- memory and machine ----------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (KiB) from /proc/<pid>/status; {} once it is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in MEMORY_FIELDS:
                    out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def proc_status(pid: int) -> dict[str, int]:
    """`memory_kib` of a process that must be alive."""
    out = memory_kib(pid)
    if "VmRSS" not in out:
        raise RuntimeError(f"process {pid} is gone (no VmRSS)")
    return out


def rss_mib(pid: int) -> float:
    return proc_status(pid)["VmRSS"] / 1024


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"
