"""Per-request counters are summed in a dict and handed to the OpenTelemetry SDK in batches:
a scrape sees every add at once, a push exporter within FLUSH_S, shutdown loses nothing."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.telemetry.metrics import FLUSH_S, Metrics


def pushed(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """What a push exporter would send now: label set -> cumulative value."""
    data = reader.get_metrics_data()
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out[tuple(sorted((p.attributes or {}).items()))] = p.value  # type: ignore[union-attr]
    return out


def scraped(metrics: Metrics, line_start: str) -> list[str]:
    return [
        ln for ln in metrics.prometheus_text().decode().splitlines() if ln.startswith(line_start)
    ]


CLIENT = {"client": "web", "outcome": "admitted"}
CLIENT_KEY = (("client", "web"), ("outcome", "admitted"))


async def test_a_scrape_sees_every_add_and_a_push_within_the_flush_period() -> None:
    reader = InMemoryMetricReader()
    m = Metrics([reader])
    for _ in range(3):
        m.client_requests.add(1, CLIENT)
    m.client_requests.add(1, {"client": "web", "outcome": "rpm"})
    m.tokens.add(120, {"target": "t", "gen_ai.token.type": "input"})
    assert pushed(reader, "turnout.client.requests") == {}  # still in the tally

    await asyncio.sleep(FLUSH_S + 0.3)  # no scrape: the timer flushed it
    assert pushed(reader, "turnout.client.requests") == {
        CLIENT_KEY: 3,
        (("client", "web"), ("outcome", "rpm")): 1,
    }
    assert pushed(reader, "gen_ai.client.token.usage") == {
        (("gen_ai.token.type", "input"), ("target", "t")): 120
    }

    m.client_requests.add(1, CLIENT)
    (line,) = [ln for ln in scraped(m, "turnout_client_requests_total") if "admitted" in ln]
    assert line.endswith(" 4.0")  # the scrape flushed first: nothing lags
    m.shutdown()


def test_without_an_event_loop_adds_go_straight_through() -> None:
    reader = InMemoryMetricReader()
    m = Metrics([reader])
    m.client_requests.add(1, CLIENT)
    assert pushed(reader, "turnout.client.requests") == {CLIENT_KEY: 1}
    m.shutdown()


async def test_a_flush_before_shutdown_hands_over_what_is_pending() -> None:
    reader = InMemoryMetricReader()
    m = Metrics([reader])
    m.client_requests.add(2, CLIENT)
    m.flush()  # what Runtime.close does on the loop before the threaded shutdown
    assert pushed(reader, "turnout.client.requests") == {CLIENT_KEY: 2}
    m.shutdown()


async def test_attempts_and_requests_are_counted_by_their_durations_at_once() -> None:
    """No tally and no flush: a reader sees every attempt and request when it collects."""
    reader = InMemoryMetricReader()
    m = Metrics([reader])
    m.duration.record(0.2, {"target": "t", "outcome": "success"})
    m.duration.record(0.1, {"target": "t", "outcome": "success"})
    m.request_duration.record(0.3, {"route": "r", "status": "200"})
    assert pushed(reader, "turnout.attempts") == {(("outcome", "success"), ("target", "t")): 2}
    assert pushed(reader, "turnout.requests") == {(("route", "r"), ("status", "200")): 1}
    m.shutdown()
