"""The relay's reading of a committed stream's events (`gateway.upstream.relay._Batch`), without
sockets: which bytes go on to the client and how the stream stands. Up to `malformed_max`
malformed events per stream are dropped, counted over the whole stream (not per run); one more
is a provider failure that stops the batch there (issue 14)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from gateway.upstream.attempt import Clocks, OpenStream
from gateway.upstream.relay import DONE, _Batch
from gateway.upstream.sse import SseSplitter
from health.outcome import FailureReason, OutcomeKind

BAD = b'data: {"choices": ['  # an event as the splitter hands it on: no blank line


def data(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    return b"data: " + orjson.dumps({"choices": [choice]})


def stream() -> OpenStream:
    response: Any = None  # the batch never touches the connection
    clocks = Clocks(math.inf, math.inf, 1.0)
    return OpenStream(response, SseSplitter(), [], [], False, 0.0, 0.0, {}, clocks)


def sent(batch: _Batch) -> list[bytes]:
    return [e for e in batch.take().split(b"\n\n") if e]


def test_no_malformed_event_passes_every_event_through() -> None:
    s = stream()
    batch = _Batch(False, s, 3)
    batch.consume([data("a"), b": keep-alive", data("b", "stop"), b"data: [DONE]"])
    assert batch.take() == data("a") + b"\n\n" + data("b", "stop") + b"\n\n" + DONE
    assert batch.done and batch.finished and batch.failure is None
    assert s.malformed == 0


@pytest.mark.parametrize("malformed_max", [1, 3])
def test_malformed_events_up_to_the_limit_are_dropped(malformed_max: int) -> None:
    s = stream()
    batch = _Batch(False, s, malformed_max)
    batch.consume([data("a"), *[BAD] * malformed_max, data("b", "stop")])
    assert sent(batch) == [data("a"), data("b", "stop")]
    assert batch.failure is None and batch.finished and not batch.done
    assert s.malformed == malformed_max


def test_the_count_is_per_stream_across_batches_and_gaps() -> None:
    s = stream()
    batch = _Batch(False, s, 2)
    batch.consume([data("a"), BAD, data("b")])
    assert sent(batch) == [data("a"), data("b")]
    batch.consume([data("c"), BAD])  # a later read: still the same stream's count
    assert sent(batch) == [data("c")]
    assert batch.failure is None
    batch.consume([data("d"), BAD, data("e")])  # the third, though never two in a row
    assert sent(batch) == [data("d")]  # nothing after the failing event goes on
    assert batch.failure is not None
    assert batch.failure.kind is OutcomeKind.PROVIDER_FAILURE
    assert batch.failure.reason is FailureReason.MALFORMED
    assert batch.failure.detail == "3 malformed events"
    assert s.malformed == 3


def test_a_limit_of_zero_fails_on_the_first_malformed_event() -> None:
    s = stream()
    batch = _Batch(False, s, 0)
    batch.consume([data("a"), BAD, data("b", "stop"), b"data: [DONE]"])
    assert sent(batch) == [data("a")]
    assert batch.failure is not None and batch.failure.reason is FailureReason.MALFORMED
    assert batch.failure.detail == "malformed event"
    assert not batch.done and s.malformed == 1


@pytest.mark.parametrize(
    "bad",
    [BAD, b"data: [1, 2]", b'data: {"choices": 7}', b'data: {"choices": [3]}'],
    ids=["not-json", "not-an-object", "choices-not-a-list", "choice-not-an-object"],
)
def test_every_kind_of_malformed_event_is_tolerated_alike(bad: bytes) -> None:
    s = stream()
    batch = _Batch(False, s, 1)
    batch.consume([bad, data("a")])
    assert sent(batch) == [data("a")]
    assert s.malformed == 1 and batch.failure is None
