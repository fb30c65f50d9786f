"""Request features: token estimate, flags, task category from the default rule set, and
per-request routing overrides; plus a reported (not asserted) timing on a 200 KB prompt."""

from __future__ import annotations

import pytest

from ops.bench.features import make_body, measure
from policies.features import InvalidFeature, extract
from policies.tasks import DEFAULT_TASK_RULES, TaskRules
from tests.builders import chat


@pytest.mark.parametrize(
    ("user", "system", "task"),
    [
        ("Hello, how are you today?", None, "chat"),
        ("Why does this fail?\n```\nx = [1][2]\n```", None, "code"),
        ("def parse(line):\n    return line.split()", None, "code"),
        ("import os\nprint(os.getcwd())", None, "code"),
        ("Write a SQL query for the top 5 customers", None, "code"),
        ("I trust you, tell me a joke", None, "chat"),  # not "rust"
        ("Solve for x: 2x + 3 = 7", None, "math"),
        ("What is 12 * 7 = ?", None, "math"),
        ("Extract the names and dates from this email", None, "extraction"),
        ("TL;DR of the thread below please", None, "summarization"),
        ("Think step by step about the pros and cons of remote work", None, "reasoning"),
        ("hi", "You are an expert Python programming assistant.", "code"),
        # extraction and summarization look at the user turn only
        ("hi", "Always answer in JSON. Summarize when asked.", "chat"),
        # first matching rule wins: code before summarization
        ("Summarize what this Python function does", None, "code"),
    ],
)
def test_default_task_rules(user: str, system: str | None, task: str) -> None:
    assert extract("chat", chat(user, system=system), 0).task == task


def test_only_the_last_user_turn_counts() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Fix this Python traceback"},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": [{"type": "text", "text": "thanks, now tell me a joke"}]},
        ]
    }
    assert extract("chat", body, 0).task == "chat"


def test_long_texts_are_scanned_at_head_and_tail_only() -> None:
    rules = TaskRules(DEFAULT_TASK_RULES.rules, scan_chars=100)
    filler = "lorem ipsum " * 1000
    assert extract("chat", chat("traceback " + filler), 0, rules=rules).task == "code"
    assert extract("chat", chat(filler + " traceback"), 0, rules=rules).task == "code"
    assert extract("chat", chat(filler + " traceback " + filler), 0, rules=rules).task == "chat"


def test_flags_and_estimates() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x" * 400},
                    {"type": "image_url", "image_url": {"url": "data:"}},
                ],
            }
        ],
        "tools": [{"type": "function"}],
        "response_format": {"type": "json_schema"},
        "max_completion_tokens": 50,
        "stream": True,
    }
    f = extract("chat", body, 0)
    assert (f.estimated_input_tokens, f.max_tokens, f.stream) == (101, 50, True)
    assert f.tools and f.images and f.json_output
    assert extract("chat", chat("x", max_tokens=True), 0).max_tokens is None


def test_an_anthropic_image_block_counts_as_an_image() -> None:
    source = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    content = [{"type": "text", "text": "what is this"}, {"type": "image", "source": source}]
    body = {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": content}]}
    assert extract("chat", body, 100).images
    body["messages"] = [{"role": "user", "content": content[:1]}]
    assert not extract("chat", body, 100).images


def test_a_responses_request_has_the_same_features_as_its_chat_completions_twin() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    responses = {
        "model": "m",
        "instructions": "You write Python.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "x" * 400}, image]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "y" * 40},
            {"role": "user", "content": "Write a Python function"},
        ],
        "tools": [{"type": "function", "name": "f"}],
        "text": {"format": {"type": "json_object"}},
        "max_output_tokens": 50,
        "stream": True,
    }
    f = extract("chat", responses, 0)
    assert (f.max_tokens, f.stream, f.tools, f.images, f.json_output) == (
        50,
        True,
        True,
        True,
        True,
    )
    assert f.estimated_input_tokens == (17 + 400 + 40 + 23) // 4 + 1
    assert (
        f.task
        == extract("chat", chat("Write a Python function", system="You write Python."), 0).task
    )
    assert f.task == "code"
    plain = extract("chat", {"model": "m", "input": "Solve for x"}, 0)
    assert (plain.task, plain.tools, plain.max_tokens) == ("math", False, None)


def test_completions_and_embeddings() -> None:
    assert extract("completions", {"prompt": ["Solve for x", "now"]}, 0).task == "math"
    f = extract("embeddings", {"input": "Solve for x"}, 123)
    assert (f.task, f.estimated_input_tokens) == ("chat", 31)


def test_overrides_from_metadata_and_headers() -> None:
    body = chat(
        "hello", metadata={"max_cost": "0.01", "quality_floor": "0.9", "task": "code", "n": 1}
    )
    f = extract("chat", body, 0)
    assert (f.max_cost, f.quality_floor, f.task) == (0.01, 0.9, "code")
    assert dict(f.metadata) == {"max_cost": "0.01", "quality_floor": "0.9", "task": "code"}
    headers = {"x-turnout-max-cost": "0.5", "x-turnout-task": "Math"}
    f = extract("chat", body, 0, headers=headers)
    assert (f.max_cost, f.quality_floor, f.task) == (0.5, 0.9, "math")
    plain = extract("chat", chat("hello"), 0)
    assert (plain.max_cost, plain.quality_floor, dict(plain.metadata)) == (None, None, {})


@pytest.mark.parametrize(
    ("metadata", "headers", "param"),
    [
        ({"max_cost": "cheap"}, None, "metadata.max_cost"),
        ({"max_cost": "-1"}, None, "metadata.max_cost"),
        ({"quality_floor": "1.5"}, None, "metadata.quality_floor"),
        ({"quality_floor": "nan"}, None, "metadata.quality_floor"),
        ({}, {"x-turnout-max-cost": "inf"}, "x-turnout-max-cost"),
        ({}, {"x-turnout-task": "no spaces allowed"}, "x-turnout-task"),
    ],
)
def test_invalid_overrides(
    metadata: dict[str, str], headers: dict[str, str] | None, param: str
) -> None:
    with pytest.raises(InvalidFeature) as info:
        extract("chat", chat("hi", metadata=metadata), 0, headers=headers)
    assert info.value.param == param and param in str(info.value)


def test_report_extraction_time_on_a_200kb_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    assert sum(len(m["content"]) for m in make_body(200)["messages"]) >= 200 * 1024
    median, p99 = measure(kb=200, runs=20)
    with capsys.disabled():  # a report, not an assertion: machines differ
        print(
            f"\n[bench] extract() on a 200 KB chat body: median {median:.3f} ms, p99 {p99:.3f} ms"
        )
