"""The gateway under test: a subprocess on a free loopback port, its memory and its logs.

`demo` runs `python -m gateway demo --port 0` (three simulated providers in-process); with a
config file, `python -m gateway serve -c PATH --host 127.0.0.1 --port 0`. Port 0 lets the
kernel pick a free port; the URL is read from the line the gateway prints once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ops.bench.procfs import memory_kib
from ops.bench.procs import REPO

from .types import SECRET_PREFIX

# `turnout demo ready: URL/v1` or `turnout serving config.yaml on URL/v1`, loopback only
READY = re.compile(r"^turnout (?:demo ready: |serving .* on )(http://127\.0\.0\.1:(\d+))/v1$", re.M)
LEVEL = re.compile(r"\s(ERROR|CRITICAL)\s|\"(?:level|levelname|severity)\":\s*\"(ERROR|CRITICAL)\"")
NOISE = re.compile(r"^\S+ \S+ |[0-9a-f]{16,}|\d+")


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else "python3"


@dataclass
class GatewayProc:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    stdout: Path
    stderr: Path
    mode: str

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def command(python: str, config: str | None) -> list[str]:
    base = [python, "-m", "gateway", "--log-level", "INFO"]
    if config is None:
        return [*base, "demo", "--port", "0"]
    return [*base, "serve", "-c", config, "--host", "127.0.0.1", "--port", "0"]


def _spawn(cmd: list[str], logdir: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    logdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logdir / "gateway.stdout.log", logdir / "gateway.stderr.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("TURNOUT_HOST", "TURNOUT_PORT"):  # the command line says loopback, port 0
        env.pop(var, None)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=out, stderr=err, env=env, stdin=subprocess.DEVNULL
        )
    return proc, out_path, err_path


def _read(path: Path, tail: int = 0) -> str:
    text = path.read_text(errors="replace")
    return text[-tail:] if tail else text


async def start(
    python: str, config: str | None, logdir: Path, ready_s: float = 30.0
) -> GatewayProc:
    proc, out_path, err_path = _spawn(command(python, config), logdir)
    loop = asyncio.get_running_loop()
    until = loop.time() + ready_s
    while loop.time() < until and proc.poll() is None:
        m = READY.search(_read(out_path))
        if m:
            return GatewayProc(
                proc, m.group(1), int(m.group(2)), out_path, err_path, config or "demo"
            )
        await asyncio.sleep(0.05)
    await stop(proc)
    raise RuntimeError(
        f"the gateway did not start on loopback within {ready_s}s:\n{_read(err_path, 2000)}"
    )


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None


async def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> int | None:
    """SIGINT (a graceful drain), then SIGKILL; always reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(_wait, proc, grace_s)
    if proc.poll() is None:
        proc.kill()
    return await asyncio.to_thread(proc.wait)


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KB from /proc; (0, 0) once the process is gone."""
    kib = memory_kib(pid)
    return kib.get("VmRSS", 0), kib.get("VmHWM", 0)


class RssSampler:
    def __init__(self, pid: int, period_s: float = 0.25) -> None:
        self.pid = pid
        self.period_s = period_s
        self.start_kb, _ = memory_kb(pid)
        self.peak_kb = self.start_kb
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> tuple[int, int]:
        rss, hwm = memory_kb(self.pid)
        self.peak_kb = max(self.peak_kb, rss, hwm)
        return rss, hwm

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.period_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class LogScan:
    error_lines: int
    error_messages: dict[str, int]
    secret_lines: int
    secret_examples: list[str]


def scan_logs(paths: list[Path]) -> LogScan:
    errors: dict[str, int] = {}
    n_errors = n_secret = 0
    secret_examples: list[str] = []
    for path in paths:
        with path.open(errors="replace") as f:
            for line in f:
                if SECRET_PREFIX in line:
                    n_secret += 1
                    if len(secret_examples) < 5:
                        secret_examples.append(f"{path.name}: {line.strip()[:200]}")
                if LEVEL.search(line):
                    n_errors += 1
                    key = NOISE.sub("#", line.strip())[:160]
                    errors[key] = errors.get(key, 0) + 1
    ranked = dict(sorted(errors.items(), key=lambda kv: -kv[1]))
    return LogScan(n_errors, ranked, n_secret, secret_examples)
