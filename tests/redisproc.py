"""A private Redis server process for tests: ops/bench/redisproc.py, shared with the benches."""

from ops.bench.redisproc import (
    RedisProcess,
    SentinelProcess,
    free_port,
    redis_binary,
    version_options,
)

__all__ = ["RedisProcess", "SentinelProcess", "free_port", "redis_binary", "version_options"]
