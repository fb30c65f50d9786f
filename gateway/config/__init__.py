"""Configuration: one typed, immutable, validated object (see docs/configuration.md)."""

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
