"""Child processes of the benches: started pinned to cores (taskset) with their output in a
log, ended on any exit (`Children`, `supervised`), and waited for until they listen or answer."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ops.bench.net import http_get, port_open

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
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

    def _popen(
        self,
        argv: list[str],
        core: int | None,
        stdout: IO[bytes] | int,
        stderr: IO[bytes] | int,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(argv, core),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,  # Ctrl-C reaches us only; we end the children ourselves
        )

    def start(self, name: str, argv: list[str], core: int | None) -> subprocess.Popen[bytes]:
        """Start a long-running child (a server), its output in `<logdir>/<name>.log`."""
        with open(self.logdir / f"{name}.log", "wb") as log:
            proc = self._popen(argv, core, log, subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def run(
        self, argv: list[str], core: int | None, timeout: float, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Run a bounded helper (load tool, profiler) to completion; return (rc, out, err)."""
        proc = self._popen(argv, core, subprocess.PIPE, subprocess.PIPE, env)
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
        with open(out, "wb") as f:
            proc = self._popen(argv, core, f, subprocess.STDOUT)
        self.others.append(proc)
        return proc

    def pipe(self, argv: list[str], core: int | None, err: Path) -> subprocess.Popen[bytes]:
        """Start a helper whose stdout we read as it runs (its stderr goes to `err`)."""
        with open(err, "wb") as f:
            proc = self._popen(argv, core, subprocess.PIPE, f)
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


def wait_listening(children: Children, name: str, port: int, timeout_s: float = 20.0) -> None:
    proc = children.procs[name]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{children.log_tail(name)}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout_s:.0f} s")


def wait_http(
    children: Children,
    name: str,
    port: int,
    path: str,
    t0: float,
    limit_s: float,
    interval_s: float = 0.005,
) -> float:
    """Seconds from `t0` (just before spawning) to the first 200 from GET `path`."""
    proc = children.procs[name]
    while time.monotonic() - t0 < limit_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{children.log_tail(name)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(port, path, timeout=1.0)
            if status == 200:
                return time.monotonic() - t0
        time.sleep(interval_s)
    raise RuntimeError(f"{name} was not ready within {limit_s:.0f} s:\n{children.log_tail(name)}")


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
