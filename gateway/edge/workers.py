"""`turnout serve --workers N`: N worker processes on one port, supervised.

Each worker is a full gateway process bound with SO_REUSEPORT, so the kernel spreads new
connections over them. The supervisor restarts a worker that dies (with a short backoff so a
crash loop does not spin), and on SIGTERM/SIGINT passes the signal to every worker, waits
for their drain, and exits 0. With the embedded memory store each worker has its own health
view; with `health.store: redis` they share it like any other replicas.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("turnout.workers")


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies (Linux), so a killed
    supervisor never leaves orphan workers holding the port."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen([sys.executable, "-m", "gateway", *argv], preexec_fn=preexec)


def supervise(worker_argv: Sequence[str], workers: int, grace_s: float) -> int:
    """Run `workers` copies of `turnout <worker_argv>` until SIGTERM/SIGINT; return 0."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs = [_spawn(worker_argv) for _ in range(workers)]
    restarts: list[float] = []
    print(f"turnout supervisor: {workers} workers (pids {[p.pid for p in procs]})", flush=True)
    while not stopping:
        time.sleep(0.1)
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is None or stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 10.0]
            delay = min(5.0, 0.1 * (2 ** len(restarts)))
            log.warning("worker %d exited with %s; restarting in %.1f s", proc.pid, code, delay)
            time.sleep(delay)
            restarts.append(time.monotonic())
            procs[i] = _spawn(worker_argv)
            log.info("worker restarted as pid %d", procs[i].pid)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s + 5.0
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker %d did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.wait()
    return 0
