"""Process handling shared by the bench scripts (run.py, soak.py): children pinned to cores
and ended on any exit, CPU accounting from /proc, a quiet-machine check, `supervised`."""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE, CLIENT_CORE = 0, 1


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
            preexec_fn=die_with_parent,  # Ctrl-C reaches us only; we end the children ourselves
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
            preexec_fn=die_with_parent,
        )
        self.others.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
        finally:
            if proc.poll() is None:  # timed out, interrupted or aborted: end it now
                end_process(proc, 1.0)
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
            preexec_fn=die_with_parent,
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
        end_process(proc, grace_s)
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


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM if this script dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def end_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
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


def pick_python() -> str:
    """An interpreter that can import the gateway: this one, else the repo's venv."""
    code = "import gateway, aiohttp, uvloop, orjson"
    for python in (sys.executable, str(REPO / ".venv" / "bin" / "python")):
        if Path(python).exists():
            ok = subprocess.run([python, "-c", code], capture_output=True, timeout=60)
            if ok.returncode == 0:
                return python
    raise SystemExit("cannot import gateway: run with the project's venv python")


class Abort(Exception):
    pass


def _raise_abort(signum: int, _frame: object) -> None:
    raise Abort(f"stopped by {signal.Signals(signum).name}")


def supervised(
    body: Callable[[Children, Path, bool], int],
    *,
    what: str,
    no_pin: bool,
    time_limit_s: int,
    keep_logs: bool,
    nice: int = 0,
) -> int:
    """Run `body(children, tmp, pin)` so that every process it starts ends on any exit
    (return, error, Ctrl-C, SIGTERM/SIGHUP, the time limit), and its temp dir is removed
    unless `keep_logs`. Shared by run.py and soak.py."""
    affinity = os.sched_getaffinity(0)
    pin = not no_pin and shutil.which("taskset") is not None and {0, 1} <= affinity
    tmp = Path(tempfile.mkdtemp(prefix=f"turnout-{what}-"))
    children = Children(tmp, pin, nice)
    atexit.register(children.stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _raise_abort)
    signal.alarm(time_limit_s)
    try:
        return body(children, tmp, pin)
    except (Abort, KeyboardInterrupt) as exc:
        print(f"\naborted: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\n{what} failed: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        children.stop_all()
        if keep_logs:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def set_affinity(pid: int, core: int) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {core})
