"""The run's totals: counts, findings with a few diverse examples each, the gateway's state."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .types import Answer, Case
from .verdict import DEFECTS, INFO, findings, status_labels

MAX_EXAMPLES = 5


@dataclass
class Bucket:
    count: int = 0
    signatures: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "signatures": dict(self.signatures.most_common()),
            "examples": self.examples,
        }


@dataclass
class GatewayFacts:
    mode: str = "demo"
    url: str = ""
    pid: int = 0
    alive_at_end: bool = False
    healthz_at_end: bool = False
    exit_code: int | None = None
    rss_kb_peak: int = 0
    rss_kb_end: int = 0
    hwm_kb_end: int = 0
    rss_kb_start: int = 0
    error_log_lines: int = 0
    error_log_messages: dict[str, int] = field(default_factory=dict)
    secret_log_lines: int = 0
    secret_log_examples: list[str] = field(default_factory=list)
    leaked_in_flight: dict[str, int] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)


@dataclass
class Report:
    seed: int
    command: str = ""
    requests: int = 0
    duration_s: float = 0.0
    by_category: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_kind_status: Counter[str] = field(default_factory=Counter)
    buckets: dict[str, Bucket] = field(
        default_factory=lambda: {name: Bucket() for name in (*DEFECTS, *INFO)}
    )
    gateway: GatewayFacts = field(default_factory=GatewayFacts)

    def add(self, case: Case, answer: Answer) -> None:
        self.requests += 1
        self.by_category[case.category] += 1
        self.by_kind[case.kind] += 1
        labels = status_labels(answer)
        self.by_status.update(labels)
        self.by_kind_status.update(f"{case.kind} {label}" for label in labels)
        for f in findings(case, answer):
            bucket = self.buckets[f.category]
            bucket.count += 1
            sig = f.signature(case.kind)
            bucket.signatures[sig] += 1
            seen = {e["signature"] for e in bucket.examples}
            if len(bucket.examples) < MAX_EXAMPLES and sig not in seen:
                bucket.examples.append(
                    {
                        "case": case.index,
                        "kind": case.kind,
                        "status": f.status,
                        "detail": f.detail[:200],
                        "signature": sig,
                        "repro": case.desc[:300],
                        "replay": f".venv/bin/python -m ops.fuzz.run --seed {self.seed} --case {case.index}",
                    }
                )

    def problems(self) -> list[str]:
        """Why the run fails; empty when it passes."""
        out = [
            f"{name}: {self.buckets[name].count}" for name in DEFECTS if self.buckets[name].count
        ]
        g = self.gateway
        if g.leaked_in_flight:
            out.append(f"leaked in_flight: {g.leaked_in_flight}")
        if not g.alive_at_end:
            out.append("gateway process not alive at the end")
        if g.secret_log_lines:
            out.append(f"credential in gateway output: {g.secret_log_lines} lines")
        if self.requests == 0:
            out.append("no requests were sent")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems(),
            "seed": self.seed,
            "command": self.command,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 2),
            "by_category": dict(self.by_category.most_common()),
            "by_kind": dict(self.by_kind.most_common()),
            "by_status": dict(self.by_status.most_common()),
            "by_kind_status": dict(sorted(self.by_kind_status.items())),
            "defects": {name: self.buckets[name].to_json() for name in DEFECTS},
            "info": {name: self.buckets[name].to_json() for name in INFO},
            "gateway": vars(self.gateway),
        }

    def render(self) -> str:
        g = self.gateway
        rate = self.requests / self.duration_s if self.duration_s else 0.0
        lines = [
            f"turnout fuzz: {self.requests} requests in {self.duration_s:.1f}s "
            f"({rate:.0f}/s), seed {self.seed}, gateway {g.mode} at {g.url}",
            "  categories: " + _counts(self.by_category),
            "  statuses:   " + _counts(self.by_status),
            f"  gateway: alive={g.alive_at_end} healthz={g.healthz_at_end} "
            f"rss start/peak/end={g.rss_kb_start}/{g.rss_kb_peak}/{g.rss_kb_end} KB "
            f"hwm={g.hwm_kb_end} KB exit={g.exit_code}",
            f"  ERROR log lines: {g.error_log_lines}; credential in logs: {g.secret_log_lines}; "
            f"leaked in_flight: {g.leaked_in_flight or 'none'}",
        ]
        for msg, n in list(g.error_log_messages.items())[:MAX_EXAMPLES]:
            lines.append(f"    {n:6d} x {msg[:150]}")
        for name in (*DEFECTS, *INFO):
            bucket = self.buckets[name]
            tag = "DEFECT" if name in DEFECTS else "info"
            lines.append(f"  [{tag}] {name}: {bucket.count}")
            for sig, n in bucket.signatures.most_common(8):
                lines.append(f"      {n:6d} x {sig[:150]}")
            for e in bucket.examples:
                lines.append(f"    - case {e['case']} {e['kind']} -> {e['status']}: {e['detail']}")
                lines.append(f"        sent: {str(e['repro'])[:220]}")
                lines.append(f"        replay: {e['replay']}")
        verdict = "PASS" if self.ok else "FAIL: " + "; ".join(self.problems())
        lines.append(f"  logs: {', '.join(g.logs)}")
        lines.append(f"  result: {verdict}")
        return "\n".join(lines)


def _counts(c: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in c.most_common())
