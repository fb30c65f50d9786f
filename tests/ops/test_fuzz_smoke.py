"""The fuzzer (ops/fuzz) runs end to end against a demo gateway subprocess, bounded and small.

The run is shared by the tests below; its verdict must be clean: no gateway-own 5xx, no
non-OpenAI-shaped error, no hang, no leaked in-flight count, no leaked secret.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ops.fuzz.cases import make_case
from ops.fuzz.engine import Options, run_fuzz
from ops.fuzz.rawhttp import parse
from ops.fuzz.report import Report
from ops.fuzz.types import CATEGORIES, OK, Answer, Reply
from ops.fuzz.verdict import findings

REQUESTS = 300


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    opts = Options(
        requests=REQUESTS,
        seconds=15.0,
        seed=7,
        concurrency=16,
        timeout_s=6.0,
        settle_s=3.0,
        logdir=tmp_path_factory.mktemp("fuzz"),
    )
    return asyncio.run(run_fuzz(opts))


def test_cases_are_reproducible_from_seed_and_index() -> None:
    aliases = ("demo", "smart")
    first = [make_case(3, i, aliases) for i in range(200)]
    assert first == [make_case(3, i, aliases) for i in range(200)]
    assert first != [make_case(4, i, aliases) for i in range(200)]
    assert {c.category for c in first} == set(CATEGORIES)


def test_raw_parser_reads_pipelined_chunked_and_close_delimited_answers() -> None:
    buf = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"HTTP/1.0 500 Oops\r\nContent-Type: text/plain\r\n\r\nuntil close"
    )
    assert parse(buf, eof=False, want=3).partial
    got = parse(buf, eof=True, want=3)
    assert [(r.status, r.body) for r in got.replies] == [
        (200, b"ok"),
        (400, b"abc"),
        (500, b"until close"),
    ]
    assert parse(b"garbage\r\n\r\n", eof=True, want=1).error


def test_the_report_is_well_formed_and_covers_every_category(report: Report) -> None:
    data = report.to_json()
    json.dumps(data)  # serialisable as it is written by --json
    assert data["requests"] == REQUESTS == sum(data["by_category"].values())
    for category in ("valid", "mutated_json", "raw"):
        assert data["by_category"].get(category, 0) > 0, category
    assert sum(data["by_status"].values()) >= REQUESTS
    assert data["by_status"].get("200", 0) > 0
    assert data["by_status"].get("400", 0) > 0
    for name in ("gateway_5xx", "non_openai_error", "hang"):
        bucket = data["defects"][name]
        assert bucket["count"] >= len(bucket["examples"])
        assert len(bucket["examples"]) <= 5
        for example in bucket["examples"]:
            assert {"case", "kind", "status", "repro", "replay"} <= set(example)
    gw = data["gateway"]
    assert gw["pid"] > 0
    assert gw["rss_kb_peak"] >= gw["rss_kb_start"] > 0
    assert gw["exit_code"] is not None  # stopped and reaped
    assert gw["url"].startswith("http://127.0.0.1:")
    assert isinstance(gw["leaked_in_flight"], dict)
    assert "result:" in report.render()


def test_the_fuzzer_finds_no_defect(report: Report) -> None:
    assert report.problems() == [], report.render()


def test_the_messages_ingress_is_fuzzed_and_judged_by_anthropics_error_shape() -> None:
    cases = [make_case(7, i, ("demo",)) for i in range(600)]
    kinds = {c.kind for c in cases}
    assert {"valid:messages", "valid:messages-stream"} <= kinds
    assert any(k.startswith("json:anthropic") for k in kinds)
    [case] = [c for c in cases if c.kind == "valid:messages"][:1]
    anthropic = b'{"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}'
    openai = b'{"error": {"message": "no", "type": "invalid_request_error", "code": null}}'

    def judged(body: bytes, status: int = 400) -> set[str]:
        answer = Answer(OK, (Reply(status, {}, body),))
        return {f.category for f in findings(case, answer)}

    assert "non_openai_error" not in judged(anthropic)
    assert "non_openai_error" in judged(openai)  # the wrong shape for this ingress
    assert "gateway_5xx" in judged(anthropic, 500)
    message = b'{"type": "message", "content": []}'
    assert "valid_not_ok" not in judged(message, 200)
    assert "valid_not_ok" in judged(b'{"choices": []}', 200)
