"""Attempt durations come from one clock (issue 12 item 10).

uvloop's `loop.time()` is cached per loop iteration at millisecond resolution; an attempt that
fails at once (connection refused on loopback) used to be timed as that cached time minus the
store's `time.monotonic()` start, which is often negative: the OTel histogram drops such a
sample with a warning, so the duration count fell behind the attempt count."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import uvloop

from tests.builders import (
    CHAT,
    chat,
    closed_port,
    make_config,
    scrape,
    start_gateway,
    start_sim,
    value,
)

N = 40


async def _run() -> dict[Any, float]:
    good = await start_sim("sim-b")
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    # A breaker that never opens and a budget that never empties, so every request first fails fast on the dead target.
    config = make_config(
        {"a": dead, "b": good.base_url},
        {"chat": ["m@a", "m@b"]},
        extra={
            "health": {"breaker": {"consecutive_failures": 1000, "min_calls": 1000}},
            "resilience": {"budget_min_retries": 1000},
        },
    )
    gw = await start_gateway(config)
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(N):
                async with s.post(gw.url + CHAT, json=chat(stream=False)) as r:
                    assert r.status == 200
            # A deadline that has run out when the attempt starts: it ends at once.
            for _ in range(N):
                headers = {"x-turnout-deadline-ms": "1"}
                async with s.post(gw.url + CHAT, json=chat(stream=False), headers=headers) as r:
                    assert r.status == 504, await r.text()
            async with s.get(gw.url + "/metrics") as r:
                return scrape(await r.text())
    finally:
        await gw.stop()
        await good.close()


def test_fast_failures_have_non_negative_durations_on_uvloop(caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    samples = uvloop.run(_run())  # the loop `turnout serve` runs on
    assert value(samples, "turnout_attempts_total", target="m@a") == 2 * N
    recorded = value(samples, "gen_ai_client_operation_duration_seconds_count", target="m@a")
    assert recorded == 2 * N  # every attempt's duration was kept: none was negative
    assert value(samples, "gen_ai_client_operation_duration_seconds_sum", target="m@a") >= 0
    assert not [r for r in caplog.records if "negative" in r.getMessage().lower()]
