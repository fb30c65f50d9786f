"""Configuration: one typed, immutable, validated object (see docs/configuration.md).

The names below load on first use, so that `gateway.config.fields` (which the settings
dataclasses of health, budget and tracing import) can be imported before the loader that
reads those very dataclasses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config.decode import ConfigError, ConfigIssue
    from gateway.config.load import load_data, load_file, load_text
    from gateway.config.model import (
        Config,
        HealthConfig,
        ProviderConfig,
        RouteConfig,
        ServerConfig,
        TargetConfig,
        Timeouts,
    )

_WHERE = {
    "ConfigError": "decode",
    "ConfigIssue": "decode",
    "load_data": "load",
    "load_file": "load",
    "load_text": "load",
    "Config": "model",
    "HealthConfig": "model",
    "ProviderConfig": "model",
    "RouteConfig": "model",
    "ServerConfig": "model",
    "TargetConfig": "model",
    "Timeouts": "model",
}

__all__ = [
    "Config",
    "ConfigError",
    "ConfigIssue",
    "HealthConfig",
    "ProviderConfig",
    "RouteConfig",
    "ServerConfig",
    "TargetConfig",
    "Timeouts",
    "load_data",
    "load_file",
    "load_text",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.config' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.config.{module}"), name)
