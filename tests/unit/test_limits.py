"""Rate limits and budgets in virtual time (gateway.limits): the windows, the counters, the
share a replica keeps to without Redis, admission and accounting - the real code, on an
injected wall clock, with no sockets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.config import Config, load_data
from gateway.config.clients import ClientConfig, ClientLimits
from gateway.limits.counter import Counter, share
from gateway.limits.ledger import Ledger, Refused, Verdict, nano_usd
from gateway.limits.metering import estimate_prompt_tokens
from gateway.limits.windows import Span, duration, window
from gateway.runtime.state import Runtime
from tests.builders import admission

T0 = datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC).timestamp()  # a minute before a new year


class Wall:
    def __init__(self, at: float = T0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def client(name: str = "web", **limits: float) -> ClientConfig:
    return ClientConfig(name, limits=ClientLimits(**limits))  # type: ignore[arg-type]


def test_windows_are_the_utc_minute_day_and_calendar_month() -> None:
    m = window(Span.MINUTE, T0 + 12.5)
    assert m.ends_at == T0 + 60 and m.reset_s(T0 + 12.5) == 47.5
    d = window(Span.DAY, T0)
    assert d.ends_at == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    mo = window(Span.MONTH, T0)
    assert mo.ends_at == d.ends_at  # December ends with the year
    assert window(Span.MONTH, mo.ends_at).epoch == mo.epoch + 1
    feb = window(Span.MONTH, datetime(2028, 2, 10, tzinfo=UTC).timestamp())
    assert feb.ends_at == datetime(2028, 3, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("seconds", "written"),
    [(0.02, "20ms"), (1.0, "1s"), (1.2, "2s"), (59.5, "1m0s"), (360, "6m0s"), (7500, "2h5m0s")],
)
def test_reset_times_are_written_as_openai_does(seconds: float, written: str) -> None:
    assert duration(seconds) == written


def test_rpm_admits_the_limit_in_a_minute_then_refuses_until_the_next() -> None:
    wall = Wall()
    ledger = Ledger([client(rpm=3)], wall)
    meter = ledger.meters["web"]
    lefts = []
    for _ in range(3):
        assert ledger.admit(client(rpm=3)) is meter
        lefts.append(meter.requests_left())
    assert lefts == [2, 1, 0]
    with pytest.raises(Refused) as refused:
        ledger.admit(client(rpm=3))
    assert refused.value.verdict == Verdict("rpm", 60.0, T0 + 60)
    wall.at += 59.9
    assert admission(ledger, client(rpm=3)) == "rpm"
    wall.at += 0.1  # the next minute (and the next year: every window rolls at once)
    assert admission(ledger, client(rpm=3)) == ""
    assert ledger.meters["web"].requests.used == 1


def test_a_client_without_limits_is_not_metered() -> None:
    ledger = Ledger([ClientConfig("free")], Wall())
    assert ledger.admit(ClientConfig("free")) is None
    assert ledger.meters == {}


def test_tpm_admits_while_under_and_counts_what_answers_used() -> None:
    wall = Wall()
    c = client(tpm=100)
    ledger = Ledger([c], wall)
    assert admission(ledger, c) == ""
    ledger.account("web", 99, 0)
    assert admission(ledger, c) == "" and ledger.meters["web"].tokens_left() == 1
    ledger.account("web", 50, 0)  # an answer may take it past the limit: counted in full
    assert admission(ledger, c) == "tpm" and ledger.meters["web"].tokens_left() == 0
    assert ledger.meters["web"].tokens.used == 149


def test_budgets_refuse_once_spent_and_name_the_window_that_ends_first_to_wait_for() -> None:
    wall = Wall(T0 - 86_400 * 3)  # December 28th
    c = client(usd_per_day=1.0, usd_per_month=2.5)
    ledger = Ledger([c], wall)
    ledger.account("web", 10, nano_usd(1.0))
    with pytest.raises(Refused) as day:
        ledger.admit(c)
    assert day.value.verdict.refused == "usd_per_day"
    assert day.value.verdict.reset_at == window(Span.DAY, wall.at).ends_at
    wall.at += 86_400  # the next day: the day's budget is back, the month's is half spent
    assert admission(ledger, c) == ""
    ledger.account("web", 10, nano_usd(1.5))
    with pytest.raises(Refused) as month:
        ledger.admit(c)
    assert month.value.verdict.refused == "usd_per_month"
    assert month.value.verdict.retry_after_s == pytest.approx(T0 + 60 - wall.at)  # new year
    assert ledger.meters["web"].month.used == nano_usd(2.5)


def test_a_reload_keeps_counts_by_name_and_applies_new_limits() -> None:
    wall = Wall()
    ledger = Ledger([client(rpm=2)], wall)
    ledger.admit(client(rpm=2))
    ledger.admit(client(rpm=2))
    ledger.configure([client(rpm=3), client("other", rpm=1)])
    assert admission(ledger, client(rpm=3)) == ""
    assert admission(ledger, client(rpm=3)) == "rpm"
    ledger.configure([client("other", rpm=1)])
    assert set(ledger.meters) == {"other"}


@pytest.mark.parametrize(
    ("limit", "replicas", "each"), [(30, 3, 10), (10, 3, 3), (2, 3, 1), (5, 1, 5), (7, 0, 7)]
)
def test_the_share_is_an_even_part_and_at_least_one(limit: int, replicas: int, each: int) -> None:
    assert share(limit, replicas) == each


def test_unshared_a_replica_keeps_to_its_share_and_to_what_the_fleet_had_left() -> None:
    wall = Wall()
    c = client(rpm=30)
    ledger = Ledger([c], wall)
    requests = ledger.meters["web"].requests
    requests.fleet = 12  # the fleet's total at the last sync (2 of them ours)
    requests.flushed = 2
    ledger.shared, ledger.replicas = False, 3
    admitted = sum(1 for _ in range(50) if admission(ledger, c) == "")
    assert admitted == 8  # its share is 10, 2 used: 8 more (the fleet had 18 left)
    requests.fleet = 27  # later reading, still unshared: the fleet's 3 left bound it too
    requests.flushed, requests.pending = 2, 0
    admitted = sum(1 for _ in range(50) if admission(ledger, c) == "")
    assert admitted == 3
    ledger.shared = True  # Redis is back: the fleet's total alone decides
    assert admission(ledger, c) == "rpm"


def test_a_counter_keeps_what_a_failed_round_trip_sent_and_resends_after_redis_lost_it() -> None:
    c = Counter("web|r", window(Span.MINUTE, T0))
    c.pending = 5
    assert c.take() == 5 and c.used == 5 and c.pending == 0
    c.pending += 1  # counted during the round trip
    c.unsend()  # the round trip failed
    assert (c.pending, c.sending, c.used) == (6, 0, 6)
    assert c.take() == 6
    c.settle(20)  # the fleet's total, our 6 included
    assert (c.fleet, c.flushed, c.used, c.own) == (20, 6, 20, 6)
    c.pending = 2
    assert c.take() == 2
    c.settle(2)  # Redis came back empty: it holds only this trip's 2 of ours
    c.resend(2)
    assert (c.pending, c.flushed) == (6, 2)  # the 6 it lost go with the next trip
    c.at(window(Span.MINUTE, T0 + 60))  # a new minute: nothing carries over
    assert (c.used, c.own) == (0, 0)


def test_a_reload_hands_the_new_limits_to_the_runtimes_ledger() -> None:
    def config(rpm: int) -> Config:
        return load_data(
            {
                "providers": {"p": {"base_url": "http://127.0.0.1:1/v1"}},
                "routes": [{"alias": "a", "candidates": ["m@p"]}],
                "clients": {"web": {"key_sha256": "a" * 64, "limits": {"rpm": rpm}}},
            },
            env={},
        )

    rt = Runtime(config(5))
    assert rt.limit_sync is None  # the memory store: limits per process, nothing to sync
    before = rt.limits.meters["web"]
    rt.swap(config(7))
    assert rt.limits.meters["web"] is before and before.limits.rpm == 7


def test_a_prompt_is_estimated_from_either_chat_shape() -> None:
    chat_body = {
        "messages": [{"role": "system", "content": "a" * 8}, {"role": "user", "content": "b" * 8}]
    }
    responses_body = {
        "instructions": "a" * 8,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "b" * 8}]}],
    }
    assert estimate_prompt_tokens(chat_body) == estimate_prompt_tokens(responses_body) == 4
    assert estimate_prompt_tokens({"input": "c" * 12}) == 3


def test_a_part_whose_text_is_not_a_string_counts_for_nothing() -> None:
    """Before: `len(1.5)` raised, and the answer (already streaming) ended in a 500."""
    parts = [{"type": "text", "text": 1.5}, {"type": "text", "text": "abcd"}, {"text": None}, 7]
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": parts}]}) == 1
