"""Turnout's fuzzer: a seeded, bounded, loopback-only stream of valid, mutated and malformed
HTTP traffic against a gateway subprocess, with every answer classified.

    run.py       command line (`.venv/bin/python -m ops.fuzz.run --requests 20000`)
    engine.py    the in-process entry `run_fuzz(Options) -> Report`
    gateway.py   the gateway subprocess: start on a free loopback port, RSS, logs, stop
    cases.py     one case per (seed, index): valid, mutated JSON, headers, paths, raw
    bodies.py    chat/embedding bodies and their mutations
    jsontext.py  a JSON writer that can also write what JSON forbids (NaN, duplicate keys...)
    rawcases.py  raw-socket protocol cases (framing, line endings, oversized headers...)
    rawhttp.py   sending raw bytes over asyncio streams and parsing the raw answers
    send.py      sending the structured cases with aiohttp's client
    verdict.py   classifying one answer; report.py sums them up; types.py the vocabulary
"""
