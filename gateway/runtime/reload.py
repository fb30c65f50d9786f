"""Live config reload: `POST /admin/reload`, SIGHUP, or the file changing on disk.

A reload builds the new config beside the old one and swaps it in one assignment; if the
file does not parse or validate, the old config keeps serving and every problem is reported.
Requests in flight keep the config they started with; health is keyed by target id and
survives. Watching works with Kubernetes ConfigMap volumes, which replace the file by swapping
a symlink: the fingerprint follows the symlinks to the real file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass

from gateway.config import ConfigError, load_file
from gateway.config.decode import ConfigIssue
from gateway.config.diff import Change, changes
from gateway.edge.exposure import exposure_problems
from gateway.runtime.state import ReloadReport, Runtime

log = logging.getLogger("turnout.reload")

_MOVED_ADMIN = ConfigIssue(
    "server.admin_port",
    "the admin listener (server.admin_port, admin_host) cannot change by reload: restart "
    "the gateway to move it",
)
SETTLE_S = 0.1  # a changed file must keep its fingerprint this long before it is reloaded


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    changed: bool
    problems: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()  # every changed key, applied live or waiting for a restart


def fingerprint(path: str) -> tuple[str, int, int, int] | None:
    """Where the path really points, and that file's identity; None if it is missing."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_ino, st.st_mtime_ns, st.st_size)


def is_reloadable(source: str) -> bool:
    return os.path.isfile(source)


async def reload(rt: Runtime, path: str | None = None) -> ReloadResult:
    """Read and validate off the event loop; swap on it."""
    path = path or rt.config.source
    try:
        new = await asyncio.to_thread(load_file, path)
        if new.server.admin_listener != rt.admin_listener:
            raise ConfigError([_MOVED_ADMIN], str(path))
        # What the start refuses beyond loopback, a reload may not open either.
        exposed = exposure_problems(new, rt.bound_host)
        if exposed:
            raise ConfigError([ConfigIssue("server", p) for p in exposed], str(path))
    except ConfigError as err:
        rt.reloads_failed += 1
        rt.telemetry.metrics.reloads.add(1, {"result": "rejected"})
        issues = tuple(err.issues)
        last = rt.last_reload
        repeated = last is not None and not last.ok and last.problems == issues
        rt.last_reload = ReloadReport(time.time(), False, str(path), issues)
        # Logged once: the same broken file reloaded again (SIGHUP, a touch) is not news.
        log.log(
            logging.DEBUG if repeated else logging.ERROR,
            "config reload rejected, still serving the previous config: %s",
            err,
        )
        return ReloadResult(False, False, tuple(str(i) for i in issues))
    found = changes(rt.config, new)
    rt.swap(new, found)
    rt.reloads_ok += 1
    rt.telemetry.metrics.reloads.add(1, {"result": "ok"})
    rt.last_reload = ReloadReport(time.time(), True, str(path), changes=found)
    applied = [c.path for c in found if c.live]
    waiting = [c.path for c in found if not c.live]
    log.info(
        "config reloaded from %s (%d routes); applied: %s",
        path,
        len(new.routes),
        ", ".join(applied) or "nothing changed",
    )
    if waiting:
        log.warning("config reload: %s changed; applies at the next restart", ", ".join(waiting))
    return ReloadResult(True, bool(found), changes=found)


class ConfigWatcher:
    """Polls the config file's fingerprint and reloads when it changes."""

    def __init__(self, rt: Runtime, path: str, period_s: float = 1.0) -> None:
        self._rt = rt
        self._path = path
        self._period_s = period_s
        self._last = fingerprint(path)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="config-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period_s)
            current = await asyncio.to_thread(fingerprint, self._path)
            if current is None or current == self._last:
                continue  # a missing file mid-swap is not a change: wait for the new one
            # An editor or `cat >` may still be writing (truncate, then write): reload only a
            # file that stayed the same for a moment, not a half-written one.
            await asyncio.sleep(SETTLE_S)
            if await asyncio.to_thread(fingerprint, self._path) != current:
                continue  # still changing: look again next period
            self._last = current
            await reload(self._rt, self._path)
