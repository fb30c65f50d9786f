"""What redis_load.py counts on Redis: INFO commandstats between two markers (set atomically
with MULTI/EXEC, the bench's own commands subtracted), MONITOR's view of the same window with
each command labelled by key kind, and the fleet store's 'redis degraded' warnings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis

MARK = "turnout-bench"


async def client_list(admin: Redis) -> dict[str, dict[str, str]]:
    """CLIENT LIST: client id -> its fields (addr, sub, ...)."""
    return {str(c["id"]): {k: str(v) for k, v in c.items()} for c in await admin.client_list()}


_MONITOR_LINE = re.compile(r"^\+?(\S+) \[(\d+) (.*?)\] (.*)$", re.S)
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def key_kind(key: str) -> str:
    if ":w:" in key:
        return "window"
    return key.rsplit(":", 1)[-1]  # state, changes, meta, probe, learned's space...


_SCRIPTS = (("HSETNX", "tick"), ("'trip'", "write"), ("PEXPIRE", "claim"), ("'DEL'", "unlock"))


def classify(args: list[str]) -> str:
    """A label such as 'hincrby window' or 'publish trip' for one monitored command."""
    cmd = args[0].lower()
    rest = args[1:]
    if cmd == "publish" and len(rest) >= 2:
        payload = rest[1].replace('\\"', '"')
        try:
            kind = orjson.loads(payload).get("k", "?")
        except orjson.JSONDecodeError:
            found = re.search(r'"k":"(\w+)"', payload)
            kind = found.group(1) if found else "?"
        return f"publish {kind}"
    if cmd in ("eval", "evalsha"):  # which script (health/fleet_sync.py, health/fleet.py)
        body = rest[0] if rest else ""
        for marker, name in _SCRIPTS:
            if marker in body:
                return f"{cmd} {name}"
        return f"{cmd} ?"
    if cmd == "del":
        return "del " + "+".join(key_kind(k) for k in rest)
    if not rest:
        return cmd
    label = f"{cmd} {key_kind(rest[0])}"
    if cmd == "set":
        flags = [a.upper() for a in rest[2:] if a.upper() in ("NX", "XX", "PX", "EX", "GET")]
        label += "".join(f" {f}" for f in flags)
    return label


@dataclass
class Window:
    """What MONITOR saw between the bench's start and end markers, per client address."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Monitor:
    """Reads MONITOR on its own connection; counts commands between ECHO markers."""

    def __init__(self, url: str, ignore: set[str]) -> None:
        self.client = Redis.from_url(url, socket_timeout=None)
        self.ignore = ignore  # the bench's own connection(s)
        self.window: Window | None = None
        self.active = False
        self.lines = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_eval_client = "?"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="monitor")
        async with asyncio.timeout(3):
            await self._ready.wait()

    async def _run(self) -> None:
        async with self.client.monitor() as m:
            self._ready.set()
            conn = m.connection
            assert conn is not None
            while True:
                raw = await conn.read_response()
                line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                self._on_line(line)

    def _on_line(self, line: str) -> None:
        self.lines += 1
        m = _MONITOR_LINE.match(line)
        if m is None:
            return
        client, rest = m.group(3), m.group(4)
        args = _ARG.findall(rest)
        if not args:
            return
        cmd = args[0].lower()
        if cmd == "echo" and len(args) > 1 and args[1].startswith(MARK):
            if args[1].endswith(":start"):
                self.window = Window()
                self.active = True
            elif args[1].endswith(":end") and self.window is not None:
                self.active = False
                self.window.done.set()
            return
        if not self.active or self.window is None or client in self.ignore:
            return
        label = classify(args)
        if client == "lua":
            client = self._last_eval_client  # a script's calls, charged to its caller
            label += " (in script)"
        elif cmd in ("eval", "evalsha"):
            self._last_eval_client = client
        self.window.counts.setdefault(client, Counter())[label] += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.aclose()


async def mark_start(admin: Redis, name: str) -> None:
    """CONFIG RESETSTAT and the MONITOR start marker, atomically (MULTI/EXEC)."""
    pipe = admin.pipeline(transaction=True)
    pipe.config_resetstat()
    pipe.echo(f"{MARK}:{name}:start")
    await pipe.execute()


async def mark_end(admin: Redis, name: str) -> dict[str, int]:
    """The MONITOR end marker and INFO commandstats, atomically: calls per command."""
    pipe = admin.pipeline(transaction=True)
    pipe.echo(f"{MARK}:{name}:end")
    pipe.info("commandstats")
    info = (await pipe.execute())[1]
    return {
        k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if isinstance(v, dict)
    }


def subtract(stats: dict[str, int], own: dict[str, int]) -> dict[str, int]:
    """commandstats minus the bench's own commands (measured on an idle Redis)."""
    out = dict(stats)
    for name, n in own.items():
        left = out.get(name, 0) - n
        if left < 0:
            raise RuntimeError(f"commandstats: {name} counted {out.get(name, 0)}, expected >= {n}")
        if left:
            out[name] = left
        else:
            out.pop(name, None)
    return out


class Degraded(logging.Handler):
    """Counts the fleet store's 'redis degraded' warnings (a round trip timed out)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "degraded" in record.getMessage():
            self.count += 1
