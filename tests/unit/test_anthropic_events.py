"""OpenAI chunks -> Messages API events (`gateway.formats.anthropic_events`), golden against
Anthropic's documented streams and the `anthropic` SDK's own accumulator; the Anthropic stream
dialect's reading of events (`gateway.upstream.dialect`); Anthropic usage in telemetry terms."""

from __future__ import annotations

from typing import Any

import anthropic.types as at
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from pydantic import TypeAdapter

from gateway.formats.translate import translation
from gateway.telemetry.hub import Usage
from gateway.upstream.dialect import ANTHROPIC, ANTHROPIC_DONE
from gateway.upstream.sse import Kind, SseSplitter

EVENTS: TypeAdapter[at.RawMessageStreamEvent] = TypeAdapter(at.RawMessageStreamEvent)
REQUEST = {"model": "chat", "max_tokens": 64, "stream": True, "messages": []}


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    body = {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "claude-sonnet-4-20250514",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def usage_chunk(prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return b"data: " + orjson.dumps({"id": "x", "choices": [], "usage": usage}) + b"\n\n"


def translated(*chunks: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The events an Anthropic client reads for an OpenAI stream, as (event name, data)."""
    tr = translation(REQUEST, "chat", "openai", "gpt-4o", "anthropic")
    assert tr is not None
    out = []
    for raw in tr.splitter().feed(b"".join(chunks)):
        name, data = raw.split(b"\n", 1)
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


HELLO = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}),
    chunk({"content": "!"}),
    chunk({}, "stop"),
    usage_chunk(25, 15),
    b"data: [DONE]\n\n",
]


def test_a_text_stream_is_the_documented_event_sequence() -> None:
    events = translated(*HELLO)
    start: dict[str, Any] = {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-20250514",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 0,  # OpenAI tells the usage at the end only
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    final_usage = {**start["usage"], "input_tokens": 25, "output_tokens": 15}
    assert events == [  # Anthropic's "basic streaming request" example, but its ping
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hello"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "!"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": final_usage}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    for _, data in events:
        EVENTS.validate_python(data)


def accumulated(events: list[tuple[str, dict[str, Any]]]) -> at.Message:
    """What the SDK's own stream accumulator makes of the events."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for _, data in events:
        snapshot = accumulate_event(
            event=EVENTS.validate_python(data), current_snapshot=snapshot, json_bufs=bufs
        )
    assert snapshot is not None
    return snapshot


def test_text_then_a_tool_call_accumulates_into_the_documented_tool_use_message() -> None:
    call = {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function"}
    events = translated(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me check."}),
        chunk({"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "San Francisco, CA"}'}}]}),
        chunk({}, "tool_calls", usage={"prompt_tokens": 472, "completion_tokens": 89}),
        b"data: [DONE]\n\n",
    )
    message = accumulated(events)
    text, use = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert use.type == "tool_use" and use.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert use.name == "get_weather" and use.input == {"location": "San Francisco, CA"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (472, 89)
    names = [n for n, _ in events]
    assert names.count("content_block_start") == 2 and names.count("content_block_stop") == 2
    assert names.count("message_delta") == 1  # the usage came on the finish chunk itself


def test_the_stream_is_translated_event_by_event() -> None:
    """Each chunk's events come out as it goes in: nothing is held but the final delta."""
    tr = translation(REQUEST, "chat", "openai", "gpt-4o", "anthropic")
    assert tr is not None
    splitter = tr.splitter()
    assert len(splitter.feed(HELLO[0])) == 1  # message_start
    assert len(splitter.feed(HELLO[1])) == 2  # the block opens, its first text
    assert len(splitter.feed(HELLO[2])) == 1
    assert len(splitter.feed(HELLO[3])) == 1  # the block closes; the delta waits for usage
    assert len(splitter.feed(HELLO[4])) == 1  # message_delta with the usage
    assert len(splitter.feed(HELLO[5])) == 1  # message_stop


def test_a_finish_without_a_usage_chunk_still_ends_properly() -> None:
    events = translated(HELLO[0], HELLO[1], HELLO[3], HELLO[5])
    assert [n for n, _ in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_an_error_chunk_is_an_error_event_and_a_broken_chunk_stays_broken() -> None:
    tr = translation(REQUEST, "chat", "openai", "gpt-4o", "anthropic")
    assert tr is not None
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    out = tr.splitter().feed(HELLO[0] + b"data: " + orjson.dumps(error) + b"\n\ndata: {\n\n")
    assert ANTHROPIC.inspect(out[1]).kind is Kind.ERROR
    assert orjson.loads(out[1].split(b"data: ", 1)[1])["error"]["message"] == "overloaded"
    assert ANTHROPIC.inspect(out[2]).kind is Kind.MALFORMED


def events_of(stream: bytes) -> list[bytes]:
    return SseSplitter().feed(stream)


@pytest.mark.parametrize(
    ("data", "kind", "content", "finished"),
    [
        ({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}},
         Kind.DATA, False, False),
        ({"type": "ping"}, Kind.DATA, False, False),
        ({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
         Kind.DATA, False, False),
        ({"type": "content_block_start", "index": 0,
          "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
         Kind.DATA, True, False),
        ({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
         Kind.DATA, True, False),
        ({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ""}},
         Kind.DATA, False, False),
        ({"type": "content_block_stop", "index": 0}, Kind.DATA, False, False),
        ({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
         Kind.DATA, True, True),
        ({"type": "message_stop"}, Kind.DONE, False, False),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
         Kind.ERROR, False, False),
        ({"no": "type"}, Kind.MALFORMED, False, False),
    ],
)  # fmt: skip
def test_the_anthropic_dialect_holds_the_preamble_back(
    data: dict[str, Any], kind: Kind, content: bool, finished: bool
) -> None:
    raw = b"event: " + str(data.get("type")).encode() + b"\ndata: " + orjson.dumps(data)
    info = ANTHROPIC.inspect(raw)
    assert (info.kind, info.content, info.finished) == (kind, content, finished)


def test_the_anthropic_dialect_reads_comments_and_broken_json() -> None:
    assert ANTHROPIC.inspect(b": keep-alive").kind is Kind.COMMENT
    assert ANTHROPIC.inspect(b"event: ping").kind is Kind.COMMENT  # no data: nothing to relay
    assert ANTHROPIC.inspect(b'data: {"type": "content_block_delta",').kind is Kind.MALFORMED
    assert ANTHROPIC.inspect(ANTHROPIC_DONE.strip()).kind is Kind.DONE
    err = ANTHROPIC.error_event("The answer is incomplete.", "upstream_cut").strip()
    assert ANTHROPIC.inspect(err).kind is Kind.ERROR and err.startswith(b"event: error\n")


def test_anthropic_usage_counts_cache_reads_and_writes_as_input() -> None:
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4",
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 5,
                "output_tokens": 1,
            },
        },
    }
    first = ANTHROPIC.usage(start, None)
    assert first == Usage(115, 1, "claude-sonnet-4", 100)
    delta = {"type": "message_delta", "usage": {"output_tokens": 42}}
    assert ANTHROPIC.usage(delta, first) == Usage(115, 42, "claude-sonnet-4", 100)
    reply = {"type": "message", "model": "m", "usage": {"input_tokens": 7, "output_tokens": 3}}
    assert ANTHROPIC.reply_usage(reply) == Usage(7, 3, "m", None)
    assert ANTHROPIC.reply_usage({"type": "message", "model": "m"}) == Usage(response_model="m")
    assert ANTHROPIC.reply_usage([]) is None
