"""The in-process entry: `await run_fuzz(Options(...))` -> Report.

Starts the gateway, sends `requests` cases (or the listed `cases`) with bounded concurrency
until done or `seconds` have passed, then checks what the run left behind: in-flight counts
on /admin/targets, the process, its memory, its logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from . import gateway
from .cases import make_case
from .rawhttp import send_raw
from .report import Report
from .send import new_session, send_http
from .types import CLOSED, Answer, Case


@dataclass
class Options:
    requests: int = 1000
    seconds: float = 60.0
    seed: int = 1
    concurrency: int = 32
    timeout_s: float = 30.0  # per request: no complete answer by then is a hang
    config: str | None = None  # None: the embedded demo
    python: str = ""  # the interpreter that runs the gateway (default: the repo's .venv)
    logdir: Path | None = None
    cases: tuple[int, ...] = ()  # replay only these case indices
    settle_s: float = 5.0  # how long in-flight counts may take to return to 0
    admin_token: str | None = None
    on_result: Callable[[Case, Answer], None] | None = None  # e.g. print each replayed case


async def _aliases(session: aiohttp.ClientSession, url: str) -> tuple[str, ...]:
    async with session.get(url + "/v1/models") as resp:
        data = json.loads(await resp.read())
    names = tuple(m["id"] for m in data.get("data", []) if isinstance(m.get("id"), str))
    return names or ("demo",)


async def _targets(
    session: aiohttp.ClientSession, url: str, token: str | None
) -> dict[str, int] | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with asyncio.timeout(5):
            async with session.get(url + "/admin/targets", headers=headers) as resp:
                data = json.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return {str(t.get("id")): int(t.get("in_flight") or 0) for t in data.get("data", [])}


async def _leaked(session: aiohttp.ClientSession, url: str, opts: Options) -> dict[str, int]:
    """Targets whose in_flight is still not 0 after `settle_s`."""
    until = time.monotonic() + opts.settle_s
    while True:
        counts = await _targets(session, url, opts.admin_token)
        left = {"<admin/targets unreadable>": -1} if counts is None else {
            k: v for k, v in counts.items() if v != 0
        }  # fmt: skip
        if not left or time.monotonic() >= until:
            return left
        await asyncio.sleep(0.25)


async def _healthz(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with asyncio.timeout(5), session.get(url + "/healthz") as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


class Runner:
    def __init__(self, opts: Options, gw: gateway.GatewayProc, aliases: tuple[str, ...]) -> None:
        self.opts = opts
        self.gw = gw
        self.aliases = aliases
        self.report = Report(opts.seed)

    async def one(
        self, index: int, session: aiohttp.ClientSession, fresh: aiohttp.ClientSession
    ) -> None:
        case = make_case(self.opts.seed, index, self.aliases)
        t = self.opts.timeout_s
        if case.raw is not None:
            answer = await send_raw("127.0.0.1", self.gw.port, case.raw, t)
        else:
            assert case.http is not None
            answer = await send_http(session, self.gw.url, case.http, t)
            if answer.outcome == CLOSED:  # maybe a pooled connection the server had closed
                again = await send_http(fresh, self.gw.url, case.http, t)
                answer = again if again.outcome != CLOSED else answer
        self.report.add(case, answer)
        if self.opts.on_result is not None:
            self.opts.on_result(case, answer)

    async def run(self, session: aiohttp.ClientSession, fresh: aiohttp.ClientSession) -> None:
        indices: Iterator[int] = iter(self.opts.cases or range(self.opts.requests))
        stop_at = time.monotonic() + self.opts.seconds

        async def worker() -> None:
            for index in indices:  # shared: each index is taken by one worker
                if time.monotonic() >= stop_at or not self.gw.alive:
                    return
                await self.one(index, session, fresh)

        n = max(1, min(self.opts.concurrency, self.opts.requests or len(self.opts.cases)))
        await asyncio.gather(*(worker() for _ in range(n)))


async def run_fuzz(opts: Options) -> Report:
    logdir = opts.logdir or Path(tempfile.mkdtemp(prefix="turnout-fuzz-"))
    gw = await gateway.start(opts.python or gateway.default_python(), opts.config, logdir)
    sampler = gateway.RssSampler(gw.proc.pid)
    sampler.start()
    facts_url = gw.url
    report = Report(opts.seed)
    try:
        async with new_session(opts.concurrency) as session, new_session(4, fresh=True) as fresh:
            runner = Runner(opts, gw, await _aliases(session, gw.url))
            report = runner.report
            started = time.monotonic()
            await runner.run(session, fresh)
            report.duration_s = time.monotonic() - started
            g = report.gateway
            g.alive_at_end = gw.alive
            g.leaked_in_flight = await _leaked(session, gw.url, opts) if gw.alive else {}
            g.healthz_at_end = await _healthz(session, gw.url)
            g.alive_at_end = g.alive_at_end and gw.alive
            g.rss_kb_end, g.hwm_kb_end = sampler.sample()
    finally:
        await sampler.stop()
        exit_code = await gateway.stop(gw.proc)
    g = report.gateway
    g.mode, g.url, g.pid, g.exit_code = gw.mode, facts_url, gw.proc.pid, exit_code
    g.rss_kb_start, g.rss_kb_peak = sampler.start_kb, sampler.peak_kb
    g.logs = [str(gw.stdout), str(gw.stderr)]
    with contextlib.suppress(OSError):
        scan = gateway.scan_logs([gw.stdout, gw.stderr])
        g.error_log_lines, g.error_log_messages = scan.error_lines, scan.error_messages
        g.secret_log_lines, g.secret_log_examples = scan.secret_lines, scan.secret_examples
    return report
