"""The seam of a continued stream (`gateway.upstream.seam`), pure: what the client already has,
and how a continuation's events are joined to it — nothing duplicated or dropped at the seam,
a regenerated answer that differs is noticed, only plain text answers are continued."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.upstream.seam import Delivered, Diverged, Seam, delivered


def chunk(content: str | None = None, *, finish: str | None = None, **delta: Any) -> bytes:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    choice = {"index": 0, "delta": d, "finish_reason": finish}
    return b"data: " + orjson.dumps({"id": "chatcmpl-new", "model": "m2", "choices": [choice]})


def first(content: str, **delta: Any) -> bytes:
    d = {"content": content, **delta}
    choice = {"index": 0, "delta": d, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "chatcmpl-old", "model": "m1", "choices": [choice]})


def text_of(events: list[bytes | None]) -> str:
    out = []
    for raw in events:
        if raw is None:
            continue
        obj = orjson.loads(raw[len(b"data: ") :])
        for ch in obj.get("choices") or []:
            out.append(ch["delta"].get("content") or "")
    return "".join(out)


def feed(seam: Seam, raws: list[bytes]) -> list[bytes | None]:
    return [seam.rewrite(orjson.loads(raw[len(b"data: ") :])) for raw in raws]


def test_delivered_is_the_text_and_the_stream_id() -> None:
    events = [first("", role="assistant"), first("Hello"), first(", wor")]
    assert delivered(events) == Delivered("Hello, wor", "chatcmpl-old")


@pytest.mark.parametrize(
    "event",
    [
        first("", tool_calls=[{"index": 0, "id": "call_1", "function": {"name": "f"}}]),
        first("", reasoning_content="thinking"),
        first("", refusal="no"),
        b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"a"}},'
        b'{"index":1,"delta":{"content":"b"}}]}',
        b'data: {"id":"x","choices":[{"index":0,"text":"a completion"}]}',
    ],
    ids=["tool-calls", "reasoning", "refusal", "n>1", "completion"],
)
def test_only_a_plain_text_chat_answer_is_continued(event: bytes) -> None:
    assert delivered([first("Hello"), event]) is None


def test_a_regenerated_answer_is_relayed_from_where_the_client_stopped() -> None:
    seam = Seam(Delivered("Hello, wor", "chatcmpl-old"), regenerate=True)
    # The new stream's chunks cut the text in other places than the first did.
    out = feed(
        seam,
        [chunk("", role="assistant"), chunk("Hel"), chunk("lo, w"), chunk("orld"), chunk("!")],
    )
    assert out[:3] == [None, None, None]  # what the client has is not sent again
    assert text_of(out) == "ld!"
    assert "Hello, wor" + text_of(out) == "Hello, world!"
    for raw in out[3:]:
        assert raw is not None
        assert orjson.loads(raw[len(b"data: ") :])["id"] == "chatcmpl-old"  # one stream
    assert seam.joined


def test_the_seam_falls_exactly_on_a_chunk_boundary() -> None:
    seam = Seam(Delivered("Hello", "id"), regenerate=True)
    out = feed(seam, [chunk("Hello"), chunk(" there"), chunk(finish="stop")])
    assert out[0] is None
    assert text_of(out) == " there"
    assert out[2] is not None  # the finish chunk goes on


@pytest.mark.parametrize(
    "chunks",
    [[chunk("Hello, pla")], [chunk("Help")], [chunk("Hel"), chunk(finish="stop")]],
    ids=["differs-late", "differs-early", "ends-early"],
)
def test_a_regenerated_answer_that_differs_is_noticed(chunks: list[bytes]) -> None:
    seam = Seam(Delivered("Hello, wor", "id"), regenerate=True)
    with pytest.raises(Diverged):
        feed(seam, chunks)


def test_a_prefill_continuation_is_relayed_whole_as_the_same_stream() -> None:
    seam = Seam(Delivered("Hello, wor", "chatcmpl-old"), regenerate=False)
    out = feed(seam, [chunk("", role="assistant"), chunk("ld"), chunk("!", finish="stop")])
    assert out[0] is None  # a second role announcement mid-stream: nothing for the client
    assert text_of(out) == "ld!"
    assert all(orjson.loads(r[6:])["id"] == "chatcmpl-old" for r in out if r is not None)


@pytest.mark.parametrize(
    ("chunks", "said"),
    [
        ([" world", "!"], "world!"),  # it begins with the space the client has: not twice
        ([" ", "world"], "world"),  # in pieces too
        (["\nworld"], "\nworld"),  # another whitespace: its own, kept
        (["world"], "world"),  # no whitespace: all of it
    ],
)
def test_a_prefill_after_whitespace_does_not_repeat_it(chunks: list[str], said: str) -> None:
    """The prefill was sent without the trailing whitespace (Anthropic refuses it)."""
    seam = Seam(Delivered("Hello, ", "chatcmpl-old"), regenerate=False)
    out = feed(seam, [chunk("", role="assistant"), *map(chunk, chunks), chunk(finish="stop")])
    assert text_of(out) == said and seam.joined


def test_a_prefill_that_ends_at_once_after_whitespace_just_ends() -> None:
    seam = Seam(Delivered("Hello. ", "id"), regenerate=False)
    out = feed(seam, [chunk("", role="assistant"), chunk(finish="stop")])
    assert (
        out[-1] is not None and orjson.loads(out[-1][6:])["choices"][0]["finish_reason"] == "stop"
    )


def test_a_usage_chunk_covers_the_failed_attempts_and_says_so() -> None:
    seam = Seam(Delivered("Hello", "id"), regenerate=True)  # one failed attempt before
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    raw = seam.rewrite({"id": "x", "choices": [], "usage": usage})
    assert raw is not None
    got = orjson.loads(raw[6:])["usage"]
    # the cut attempt was sent the same prompt (3) and generated at least "Hello" (2 tokens)
    assert (got["prompt_tokens"], got["completion_tokens"], got["total_tokens"]) == (6, 7, 13)
    assert got["turnout_estimated"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "failed_attempts": 1,
    }


def test_a_prefill_continuation_s_prompt_already_holds_the_delivered_text() -> None:
    seam = Seam(Delivered("Hello, world", "id"), regenerate=False, cuts=2)
    usage = {"prompt_tokens": 10, "completion_tokens": 4}
    raw = seam.rewrite({"id": "x", "choices": [], "usage": usage})
    assert raw is not None
    got = orjson.loads(raw[6:])["usage"]
    # each of the 2 failed attempts was sent the prompt without the 3 delivered tokens
    assert got["turnout_estimated"]["prompt_tokens"] == 2 * (10 - 3)
    assert got["completion_tokens"] == 4 + 3
