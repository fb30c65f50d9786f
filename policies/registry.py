"""The explicit registry of built-in policies, readable at a glance."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from policies.priority import PriorityPolicy
from policies.types import Policy

BUILTIN: Mapping[str, Callable[[], Policy]] = {
    "priority": PriorityPolicy,
}


def make_policy(name: str) -> Policy:
    """Build a policy by name; KeyError names the known ones."""
    try:
        factory = BUILTIN[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN))
        raise KeyError(f"unknown policy {name!r} (known: {known})") from None
    return factory()
