"""Third-party policy parts: `module:Class` in YAML, or a name from the entry-point group
`turnout.policies`.

A plugin is a class. If it has a `Params` attribute (a dataclass), the YAML `params` decode
into it (`policies.params`) and the class is called with them; otherwise it is called with
no argument and takes no params. What the instance can do decides where it may be used:
`rank` (a whole policy), `score` (a scorer) or `reject` + `hard` (a filter).
"""

from __future__ import annotations

import dataclasses
import importlib
from importlib.metadata import entry_points
from typing import Any

from policies.params import Issue, decode_params, join

ENTRY_POINT_GROUP = "turnout.policies"


def _import(ref: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _entry_point(name: str) -> Any | None:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    for ep in found:
        return ep.load()
    return None


def is_reference(name: str) -> bool:
    """`module:Class` rather than a plain name."""
    module, colon, qualname = name.partition(":")
    return bool(colon and module and qualname)


class PluginError(Exception):
    """A plugin could not be imported; the message says why."""


def find_plugin(name: str) -> Any | None:
    """The class `name` refers to (`module:Class`, or an entry-point name), or None when no
    installed package declares that entry point. Raises PluginError if importing fails."""
    try:
        return _import(name) if is_reference(name) else _entry_point(name)
    except Exception as exc:  # an import runs arbitrary code: report, never crash a reload
        raise PluginError(f"cannot load {name!r}: {type(exc).__name__}: {exc}") from exc


def instantiate(
    cls: Any, name: str, raw_params: object, path: str
) -> tuple[Any | None, list[Issue]]:
    """An instance of plugin class `cls`, built with its params decoded from `raw_params`;
    None and issues (under `path`, the spec) if that fails."""
    if not callable(cls):
        return None, [(path, f"{name!r} is not a class")]
    params_cls = getattr(cls, "Params", None)
    try:
        if isinstance(params_cls, type) and dataclasses.is_dataclass(params_cls):
            params, issues = decode_params(params_cls, raw_params, join(path, "params"))
            if params is None:
                return None, issues
            return cls(params), []
        if raw_params:
            return None, [(join(path, "params"), f"{name!r} takes no params")]
        return cls(), []
    except Exception as exc:
        return None, [(path, f"cannot build {name!r}: {type(exc).__name__}: {exc}")]
