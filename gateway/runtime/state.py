"""The gateway's live state: the current config, health, upstream pool and policies.

Config is swapped in one assignment (`swap`); health is keyed by target id and outlives it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from gateway.config.decode import ConfigIssue
from gateway.config.diff import Change
from gateway.config.model import Config
from gateway.edge.accept import BodyBytes
from gateway.edge.shutdown import Drain
from gateway.limits.ledger import Ledger
from gateway.limits.sync import LimitSync
from gateway.pipeline.answers import Answers
from gateway.resilience.budget import BudgetSettings, RetryBudget
from gateway.telemetry.hub import Telemetry
from gateway.upstream.pool import UpstreamPool
from health.fleet import FleetStore
from health.learned import Space
from health.memory import MemoryStore
from health.store import HealthStore
from policies.compose import share
from policies.types import Policy

if TYPE_CHECKING:
    from gateway.pipeline.routing import Routed


def _budget_settings(config: Config) -> BudgetSettings:
    return config.resilience.budget


def make_store(config: Config) -> HealthStore:
    """The health store the config asks for: memory (embedded) or redis (fleet)."""
    h = config.health
    if h.store == "redis":
        return FleetStore(h.fleet, h.settings)
    return MemoryStore(h.settings)


def _space(store: HealthStore, route_key: str, suffix: str) -> Space:
    return store.learned(route_key + suffix)


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """The last reload attempt, for `GET /admin/config` and `/readyz`: what was rejected, or
    which keys changed (each applied live, or waiting for a restart)."""

    at_wall_s: float
    ok: bool
    source: str
    problems: tuple[ConfigIssue, ...] = ()
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True, slots=True)
class Live:
    """A config and the policies built from it, swapped together: a request that read one
    config always finds its routes' policies (even if a reload lands while it reads the body)."""

    config: Config
    policies: Mapping[str, Policy]
    # (route key, operation, task, client format) -> the decision of a policy that reads
    # nothing, made while every candidate was available (`gateway.pipeline.routing`)
    steady: dict[tuple[str, str, str, str], Routed] = field(
        default_factory=dict, compare=False, repr=False
    )


class Runtime:
    def __init__(
        self,
        config: Config,
        store: HealthStore | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store: HealthStore = store or make_store(config)
        self.telemetry = telemetry or Telemetry(
            config.telemetry.traces, recent_traces=config.telemetry.recent_traces
        )
        self.store.track(config.targets)
        self.pool = UpstreamPool()
        self.budget = RetryBudget(_budget_settings(config))
        self.body_bytes = BodyBytes(config.server.max_body_bytes_in_flight)
        self.panicking: set[str] = set()  # targets with a panic attempt in flight
        self.drain = Drain()  # the requests in flight, for the drain at shutdown
        self.loop: asyncio.AbstractEventLoop | None = None  # set by `start`
        self.answers = Answers()  # who answered what, for feedback
        # Client keys' rate limits and budgets; shared through Redis with a redis store.
        self.limits = Ledger(config.clients.values())
        self.limit_sync = (
            LimitSync(self.limits, config.health.fleet) if config.health.store == "redis" else None
        )
        # Targets that answered a prefill continuation with a 400: regenerate there instead.
        self.prefill_refused: set[str] = set()
        self.reloads_ok = 0
        # The address the server listens on (set when it starts): a reload may not open there
        # what the start would have refused (gateway.edge.exposure).
        self.bound_host = "127.0.0.1"
        # The admin plane's own listener (server.admin_listener), fixed when the app is built:
        # a reload may not move it (its paths are routed to one listener or the other).
        self.admin_listener = config.server.admin_listener
        self.reloads_failed = 0
        self.last_reload: ReloadReport | None = None
        self.loaded_wall_s = time.time()  # when the config in use was loaded
        self.started_wall_s = time.time()
        self.live = Live(config, self._policies(config))

    @property
    def config(self) -> Config:
        return self.live.config

    @property
    def last_reload_error(self) -> str:
        last = self.last_reload
        return "" if last is None or last.ok else "; ".join(str(p) for p in last.problems)

    @property
    def policies(self) -> Mapping[str, Policy]:
        return self.live.policies

    def _policies(self, config: Config) -> Mapping[str, Policy]:
        """One policy per route, built from the YAML (policies hold state: a round-robin
        turn...). What learning policies learn lives in the health store, one space per route
        key: it survives reloads and, with Redis, is shared by the fleet."""
        out: dict[str, Policy] = {}
        learning: list[str] = []
        for r in config.routes:
            policy = r.make_policy()  # provisioned (and so checked) by the loader
            for suffix in share(policy, partial(_space, self.store, r.key)):
                learning.append(r.key + suffix)
            out[r.key] = policy
        self.store.retain_learned(learning)  # a route that left (or stopped learning): forget
        return out

    def swap(self, config: Config, changes: Sequence[Change] | None = None) -> None:
        """Use `config` from the next request on; requests in flight keep the one they read.

        `changes` (`gateway.config.diff.changes`; None: anything may have changed) tells which
        sections to hand to the components that copied settings at start: the retry budget
        and the body-bytes bound. What each request reads (routes, policies, resilience,
        server.admin_token...) applies by the swap itself; `restart` keys wait."""
        policies = self._policies(config)
        self.store.track(config.targets)
        touched = None if changes is None else {c.section for c in changes if c.live}
        if touched is None or "resilience" in touched:
            self.budget.settings = _budget_settings(config)
        if touched is None or "server" in touched:
            self.body_bytes.limit = config.server.max_body_bytes_in_flight
        self.limits.configure(config.clients.values())
        self.live = Live(config, policies)
        self.loaded_wall_s = time.time()

    async def start(self) -> None:
        # The loop the gateway serves on: the request path asks it for the current task
        # (`asyncio.current_task()` without it looks the loop up: a getpid syscall on 3.11).
        self.loop = asyncio.get_running_loop()
        await self.store.start()
        if self.limit_sync is not None:
            await self.limit_sync.start()

    async def close(self) -> None:
        await self.pool.close()
        if self.limit_sync is not None:
            await self.limit_sync.close()
        await self.store.close()
        self.telemetry.metrics.flush()  # on the loop that adds: the shutdown runs in a thread
        await asyncio.to_thread(self.telemetry.shutdown)  # bounded: flush timeouts are short
