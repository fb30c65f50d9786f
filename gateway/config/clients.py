"""Client keys (`clients:`): who may call the gateway, which routes each may use, and which
of the request's routing overrides it may send.

    clients:
      web-app:
        key_sha256: 3a7bd3e2...        # `turnout key new` prints a key and this line
        routes: [chat, smart]          # default: every route
        overrides: [debug, deadline]   # default: none (the headers are ignored)
        forbidden_overrides: refuse    # default: ignore (refuse: 403 when one is sent)
        labels: {team: web}            # on the request's span and log lines
        limits: {rpm: 600, tpm: 200000, usd_per_day: 20}   # shared by the fleet
      batch:
        key_env: TURNOUT_BATCH_KEY     # the key itself, from the environment

A key is never written in the config: its SHA-256 is, or the name of the variable that holds
it. Keys are 256-bit random strings, so an unsalted digest is as good as a salted one (salt
protects guessable passwords) and gives what the request path needs: one digest, one dict
lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.config.decode import Issues, Section, join
from gateway.config.sections import decode_section
from health.declared import setting

# What a client may be allowed to steer, and the request headers that steer it.
OVERRIDES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "quality_floor": ("x-turnout-quality-floor",),
        "max_cost": ("x-turnout-max-cost",),
        "task": ("x-turnout-task",),
        "debug": ("x-turnout-debug",),
        "deadline": (),  # resilience.deadline_header: named by the config
        "metadata": (),  # the headers and body fields routes `match` on
    }
)
FORBIDDEN_OVERRIDES = ("ignore", "refuse")  # what a header the key may not send gets
_HEX = re.compile(r"[0-9a-f]{64}")
KEY_PREFIX = "tk-"
MIN_KEY_CHARS = 20  # an environment key shorter than this is refused: it could be guessed


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A fresh client key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """A key's rate limits and spend budgets (`clients.<name>.limits`), enforced by
    `gateway.limits` and shared by the fleet through Redis. None: no such limit."""

    rpm: int | None = setting(
        None, "requests per minute (a fixed window on the UTC minute)", live=True, positive=True
    )
    tpm: int | None = setting(
        None,
        "tokens (prompt + completion) per minute: admitted while under it, counted from each "
        "answer's usage",
        live=True,
        positive=True,
    )
    usd_per_day: float | None = setting(
        None,
        "spend budget per UTC day, in US dollars, at the answering target's price",
        live=True,
        positive=True,
    )
    usd_per_month: float | None = setting(
        None, "spend budget per UTC calendar month, in US dollars", live=True, positive=True
    )

    @property
    def any(self) -> bool:
        return any(
            v is not None for v in (self.rpm, self.tpm, self.usd_per_day, self.usd_per_month)
        )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    name: str
    routes: frozenset[str] | None = None  # None: every route
    overrides: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)
    # Derived once, at load: the request headers routing ignores for this client (the
    # overrides it may not send), lower-case.
    ignored: frozenset[str] = frozenset()
    limits: ClientLimits | None = None  # None: none of them (nothing is counted)
    refuses: bool = False  # a header in `ignored` gets a 403 (forbidden_overrides: refuse)

    def may_use(self, alias: str) -> bool:
        return self.routes is None or alias in self.routes


def _ignored(overrides: frozenset[str], steering: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    return frozenset(
        h.lower() for name, names in steering.items() if name not in overrides for h in names
    )


def decode_clients(
    section: Section,
    env: Mapping[str, str],
    aliases: frozenset[str],
    issues: Issues,
    steering: Mapping[str, tuple[str, ...]] = OVERRIDES,
) -> Mapping[str, ClientConfig]:
    """`steering`: each override's headers, the config's own included (its deadline header,
    the headers routes `match` on)."""
    """digest -> client. Every problem is reported with its path; no key is ever echoed."""
    out: dict[str, ClientConfig] = {}
    if not section.ok:
        return MappingProxyType(out)
    for name in list(section.data):
        c = section.sub(name)
        if not c.ok:
            continue
        path = c.path
        hashed = c.get("key_sha256", str, "")
        env_name = c.get("key_env", str, "")
        if bool(hashed) == bool(env_name):
            issues.add(path, "give exactly one of key_sha256 (the key's SHA-256) or key_env")
            key_digest = ""
        elif hashed:
            key_digest = hashed.lower()
            if not _HEX.fullmatch(key_digest):
                issues.add(join(path, "key_sha256"), "must be 64 hex digits (turnout key new)")
        else:
            key = env.get(env_name, "")
            key_digest = digest(key)
            if len(key) < MIN_KEY_CHARS:
                issues.add(
                    join(path, "key_env"),
                    f"${env_name} must hold a key of at least {MIN_KEY_CHARS} characters "
                    "(turnout key new makes one)",
                )
        routes_raw = c.raw("routes")
        routes = None
        if routes_raw is not None:
            if not isinstance(routes_raw, list) or not all(isinstance(r, str) for r in routes_raw):
                issues.add(join(path, "routes"), "expected a list of route aliases")
            else:
                routes = frozenset(routes_raw)
                for unknown in sorted(routes - aliases):
                    issues.add(join(path, "routes"), f"unknown route {unknown!r}")
        overrides_raw = c.raw("overrides")
        overrides: frozenset[str] = frozenset()
        if overrides_raw is not None:
            if not isinstance(overrides_raw, list) or not all(
                isinstance(o, str) for o in overrides_raw
            ):
                issues.add(join(path, "overrides"), "expected a list of override names")
            else:
                overrides = frozenset(overrides_raw)
                for unknown in sorted(overrides - set(OVERRIDES)):
                    issues.add(
                        join(path, "overrides"),
                        f"unknown override {unknown!r} (known: {', '.join(OVERRIDES)})",
                    )
        labels_raw = c.raw("labels")
        labels: dict[str, str] = {}
        if labels_raw is not None:
            if not isinstance(labels_raw, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels_raw.items()
            ):
                issues.add(join(path, "labels"), "expected a mapping of strings")
            else:
                labels = dict(labels_raw)
        forbidden = c.get("forbidden_overrides", str, "ignore")
        if forbidden not in FORBIDDEN_OVERRIDES:
            issues.add(
                join(path, "forbidden_overrides"),
                f"expected one of {', '.join(FORBIDDEN_OVERRIDES)}, got {forbidden!r}",
            )
        limits = decode_section(c.sub("limits"), ClientLimits) if c.has("limits") else None
        c.raw("limits")
        c.done()
        if key_digest in out:
            issues.add(path, f"the same key as client {out[key_digest].name!r}")
        elif key_digest:
            ignored = _ignored(overrides, steering)
            out[key_digest] = ClientConfig(
                name,
                routes,
                overrides,
                MappingProxyType(labels),
                ignored,
                limits if limits is not None and limits.any else None,
                forbidden == "refuse",
            )
    return MappingProxyType(out)
