"""What a reload changes, key by key, and what `/admin/config` shows of a section: both read
the declarations (`health.declared`), so a key's YAML name, whether it applies live and
whether it is a secret are said once.

Providers, targets, routes and tasks apply live: each request reads them from the config it
started with. A declared setting applies live when its declaration says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.decode import join
from gateway.config.model import Config
from health.declared import KEY, Part, Setting, entries

REDACTED = "<redacted>"
SECTIONS = ("server", "health", "resilience", "telemetry")  # sections of declared settings
_ROUTE_KEYS = {"policy_spec": "policy", "policy": None, "key": None}  # YAML name, or skip


@dataclass(frozen=True, slots=True)
class Change:
    """One changed key, as a dotted path (`server.port`, `routes[0].policy`)."""

    path: str
    live: bool  # applied by the reload; else it takes effect at the next restart

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0].split("[", 1)[0]

    @property
    def applies(self) -> str:
        return "applied" if self.live else "restart"

    def as_dict(self) -> dict[str, str]:
        return {"key": self.path, "applies": self.applies}


def _fields(path: str, old: Any, new: Any, live: bool) -> Iterator[Change]:
    """The changed fields of two dataclass values of one type: declared settings by their
    YAML key and liveness, nested parts by their key, inline parts at this level; other
    fields (a provider's headers...) as a whole, `live` as their section."""
    for f in dataclasses.fields(old):
        if not f.compare:
            continue
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        meta = f.metadata.get(KEY)
        if isinstance(meta, Part):
            inner = path if meta.inline else join(path, meta.key or f.name)
            yield from _fields(inner, before, after, live)
        elif isinstance(meta, Setting):
            yield Change(join(path, meta.key or f.name), meta.live)
        else:
            yield Change(join(path, f.name), live)


def _entries(section: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for name in dict.fromkeys([*old, *new]):
        path = join(section, name)
        if name not in old or name not in new:
            yield Change(path, True)  # added or removed
        elif section == "targets":
            yield from _fields(path, old[name].profile, new[name].profile, True)
        else:
            yield from _fields(path, old[name], new[name], True)


def _routes(old: tuple[Any, ...], new: tuple[Any, ...]) -> Iterator[Change]:
    for i in range(max(len(old), len(new))):
        path = join("routes", i)
        if i >= len(old) or i >= len(new):
            yield Change(path, True)
            continue
        for c in _fields(path, old[i], new[i], True):
            name = c.path.removeprefix(path + ".").split(".", 1)[0]
            renamed = _ROUTE_KEYS.get(name, name)
            if renamed is not None:
                yield Change(join(path, renamed), c.live) if renamed != name else c


def changes(old: Config, new: Config) -> tuple[Change, ...]:
    """Every key `new` changes from `old`, each once, in file order."""
    found: list[Change] = []
    for section in SECTIONS:
        found += _fields(section, getattr(old, section), getattr(new, section), True)
    found += _entries("providers", old.providers, new.providers)
    found += _entries("targets", old.targets, new.targets)
    found += _routes(old.routes, new.routes)
    if old.tasks != new.tasks:
        found.append(Change("tasks", True))
    return tuple(dict.fromkeys(found))


def view(value: Any) -> dict[str, Any]:
    """A section's declared settings by YAML key (nested parts nested, inline parts at this
    level), secrets redacted: what `/admin/config` shows of it."""
    out: dict[str, Any] = {}
    for e in entries(type(value)):
        v = getattr(value, e.name)
        if isinstance(e.meta, Part):
            if e.meta.inline:
                out |= view(v)
            else:
                out[e.key] = view(v)
        elif e.meta.secret:
            out[e.key] = REDACTED if v else None
        else:
            out[e.key] = v
    return out
