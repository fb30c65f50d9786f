"""What run.py sends: the chat request (non-streaming and streaming), the streaming upstream's
pacing, and a sanity check of each path's answer before anything is measured."""

from __future__ import annotations

import json

from ops.bench.net import send_json

CHAT = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
}
CHAT_BODY = json.dumps(CHAT, separators=(",", ":"))
STREAM_BODY = json.dumps({**CHAT, "stream": True}, separators=(",", ":"))
# The streaming upstream: headers after 50 ms, then 20 events 10 ms apart (a role event,
# "[bench]", 16 words, ".", a finish event), then [DONE]. The sim's latency delays the
# response headers; the first *content* event comes one interval after them.
STREAM_SIM = ("--latency-ms", "50", "--chunk-interval-ms", "10", "--words", "16")
STREAM_EVENTS = 20


def check_json(name: str, url: str, turnout: bool) -> None:
    status, headers, body = send_json(url, CHAT_BODY)
    content = json.loads(body)["choices"][0]["message"]["content"]
    if status != 200 or not content:
        raise RuntimeError(f"{name}: unexpected answer {status} {body[:200]!r}")
    if turnout and "x-turnout-target" not in headers:
        raise RuntimeError(f"{name}: no x-turnout-target header: {headers}")


def check_stream(name: str, url: str) -> None:
    status, _, body = send_json(url, STREAM_BODY)
    events = [e for e in body.split(b"\n\n") if e.strip()]
    if status != 200 or events[-1:] != [b"data: [DONE]"] or len(events) != STREAM_EVENTS + 1:
        raise RuntimeError(f"{name}: unexpected stream ({len(events)} events): {body[:300]!r}")
