"""Micro-benchmark: feature extraction (token estimate + task rules) on large prompts.

    python -m ops.bench.features [--kb 200] [--runs 200]

Reports the median and p99 time per request; it asserts nothing (tests call `measure`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from policies.features import extract
from policies.tasks import DEFAULT_TASK_RULES, TaskRules

_FILLER = (
    "The quarterly report covers revenue, churn and hiring across every region we operate "
    "in, with notes from each team lead on what went well and what did not. "
)


def make_body(kb: int, turns: int = 20) -> dict[str, Any]:
    """A chat body of about `kb` kilobytes of text, spread over `turns` messages; no rule
    matches it, so every rule is tried on the whole scanned text (the worst case)."""
    per_turn = max(1, kb * 1024 // turns)
    text = (_FILLER * (per_turn // len(_FILLER) + 1))[:per_turn]
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are helpful. " + text}]
    for i in range(turns - 1):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    messages.append({"role": "user", "content": text + " What stands out?"})
    return {"model": "auto", "messages": messages, "max_tokens": 256}


def measure(
    kb: int = 200, runs: int = 50, rules: TaskRules = DEFAULT_TASK_RULES
) -> tuple[float, float]:
    """(median, p99) milliseconds to extract the features of a `kb` KB chat request."""
    body = make_body(kb)
    size = kb * 1024
    run: Callable[[], object] = lambda: extract("chat", body, size, rules=rules)  # noqa: E731
    run()  # warm up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t0) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--kb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args(argv)
    median, p99 = measure(args.kb, args.runs)
    head = f"extract(): {args.kb} KB chat body, {args.runs} runs"
    print(f"{head}: median {median:.3f} ms, p99 {p99:.3f} ms")
    nolimit = TaskRules(DEFAULT_TASK_RULES.rules, scan_chars=10_000_000)
    median, p99 = measure(args.kb, args.runs, nolimit)
    print(f"  same, scanning whole texts: median {median:.3f} ms, p99 {p99:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
