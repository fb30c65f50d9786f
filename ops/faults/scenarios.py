"""The matrix's scenarios: one provider fault each, with the result it must give.

Scenarios 1-14 send one request to a fresh rig (repeated `reps` times, each on a fresh rig)
and compare it with an `Expect`; 15 and 16 run steady traffic through an outage and a hang.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ops.faults.harness import (
    BREAKER,
    MODEL,
    TIMEOUTS,
    VOICE,
    Answer,
    Rig,
    SimSpec,
    full_answer,
    rig,
)
from ops.faults.report import Row

Log = list[dict[str, Any]]
# An extra check of one scenario: (problems, notes) from the rig after the request.
Check = Callable[[Rig, Answer], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Expect:
    """What the caller must get and what each sim must have seen."""

    got: str  # "json", "complete" or "error <code>" (in-band for a stream, else the body's)
    attempts: dict[str, int]  # per sim; a sim left out is not checked (a closed port)
    header: str  # x-turnout-attempts
    target: str  # x-turnout-target
    text: str = ""  # voice whose full answer the text is; "partial:<voice>": a strict prefix
    min_ms: float = 0.0
    max_ms: float = math.inf

    def describe(self) -> str:
        parts = [self.got]
        if self.text.startswith("partial:"):
            parts.append(f"part of {self.text.removeprefix('partial:')}'s answer")
        elif self.text:
            parts.append(f"text of {self.text}")
        parts.append(" · ".join(f"{k} {v}" for k, v in self.attempts.items()))
        if self.min_ms > 0:
            parts.append(f"≥ {self.min_ms:.0f} ms")
        if self.max_ms < math.inf:
            parts.append(f"< {self.max_ms:.0f} ms")
        return ", ".join(parts)


@dataclass(frozen=True)
class Case:
    """A single-request scenario."""

    id: str
    fault: str
    specs: dict[str, SimSpec]
    faults: dict[str, dict[str, Any]]
    stream: bool
    expect: Expect
    check: Check | None = None


@dataclass
class Options:
    quick: bool = False
    reps: int = 3  # single-request scenarios: fresh rigs per row (1 with --quick)
    only: frozenset[str] = field(default_factory=frozenset)  # scenario numbers, empty: all

    def wanted(self, case_id: str) -> bool:
        return not self.only or case_id.split()[0] in self.only


# --- single-request scenarios ---------------------------------------------------------------


def label(attempt: dict[str, Any]) -> str:
    """One attempt as the table shows it: its status, or the fault that ended it."""
    fault, outcome, status = attempt["fault"], attempt["outcome"], attempt["status"]
    if fault in ("ok", "status"):
        return str(status) if outcome == "completed" or fault == "status" else outcome
    return str(fault)


def attempts_cell(r: Rig, names: tuple[str, ...], since: float = 0.0) -> str:
    cells = []
    for name in names:
        if name not in r.sims:
            cells.append(f"{name} - (port closed)")
            continue
        log = r.log(name, since)
        shown = " ".join(label(a) for a in log[:6]) + (" …" if len(log) > 6 else "")
        cells.append(f"{name} {len(log)}" + (f" [{shown}]" if log else ""))
    return " · ".join(cells)


def judge(case: Case, r: Rig, a: Answer) -> list[str]:
    e = case.expect
    problems: list[str] = []
    if e.got in ("json", "complete"):
        if not a.complete():
            problems.append(f"not a complete answer: {a.got()}")
        elif e.got == "complete" and not a.stream:
            problems.append("a stream was expected")
    else:
        code = e.got.removeprefix("error ")
        if a.error_code() != code:
            problems.append(f"error code {a.error_code() or 'none'} != {code}")
        if a.stream and a.done_count:
            problems.append(f"{a.done_count} [DONE] after an error")
    text = a.text()
    if e.text.startswith("partial:"):
        full = full_answer(e.text.removeprefix("partial:"))
        if not (text and full.startswith(text) and text != full):
            problems.append(f"text is not a strict prefix of the full answer: {text!r}")
    elif e.text and text != full_answer(e.text):
        problems.append(f"text {text!r} != {e.text}'s full answer")
    for name, n in e.attempts.items():
        seen = len(r.log(name))
        if seen != n:
            problems.append(f"{name} saw {seen} attempts, expected {n}")
    if a.attempts != e.header:
        problems.append(f"x-turnout-attempts {a.attempts or 'missing'} != {e.header}")
    if a.target != e.target:
        problems.append(f"x-turnout-target {a.target or 'missing'} != {e.target}")
    if not e.min_ms <= a.ms < e.max_ms:
        problems.append(f"{a.ms:.0f} ms outside [{e.min_ms:.0f}, {e.max_ms:.0f})")
    return problems


def text_cell(case: Case, a: Answer) -> str:
    e = case.expect
    voice = e.text.removeprefix("partial:") if e.text else a.target.split("@")[-1]
    full = full_answer(voice) if voice else ""
    text = a.text()
    if not text:
        return "no text"
    if text == full:
        return f"yes ({voice}, {len(text)} chars)"
    if full.startswith(text):
        return f"no: {len(text)}/{len(full)} chars of {voice}'s"
    return f"no ({len(text)} chars, not {voice}'s)"


async def run_case(case: Case, opts: Options) -> Row:
    row = Row(case.id, case.fault, case.expect.describe())
    times: list[float] = []
    shown: tuple[Answer, Rig, list[str], list[str]] | None = None
    names = tuple(case.specs)
    for _ in range(1 if opts.quick else opts.reps):
        async with rig(case.specs) as r:
            for name, fault in case.faults.items():
                r.set_fault(name, fault)
            a = await r.post(stream=case.stream)
            problems = judge(case, r, a)
            notes: list[str] = []
            if case.check is not None:
                more, notes = case.check(r, a)
                problems += more
            times.append(a.ms)
            if shown is None or (problems and not shown[2]):
                row.attempts = attempts_cell(r, names)
                shown = (a, r, problems, notes)
    assert shown is not None
    a, _, problems, notes = shown
    row.got, row.text, row.header, row.target = a.got(), text_cell(case, a), a.attempts, a.target
    row.ms = f"{statistics.median(times):.0f}"
    if len(times) > 1:
        row.ms += f" (max {max(times):.0f}, n={len(times)})"
    row.notes = "; ".join(notes)
    row.problems = problems
    row.measures = {"ms": [round(t, 1) for t in times]}
    return row


def _b_requests(r: Rig) -> list[str]:
    """The role of the last message of each request b saw: `user` (regenerate) or
    `assistant` (prefill)."""
    return [a["request_body"]["messages"][-1]["role"] for a in r.log("b")]


def regenerated(r: Rig, a: Answer) -> tuple[list[str], list[str]]:
    roles = _b_requests(r)
    if roles != ["user"]:
        return [f"b was asked {roles}, expected the whole answer again (user)"], []
    return [], ["b regenerated, spliced at the seam"]


def diverged(r: Rig, a: Answer) -> tuple[list[str], list[str]]:
    return [], [f"b's answer begins otherwise: not spliced; {len(a.text())} chars delivered"]


def prefill_refused(r: Rig, a: Answer) -> tuple[list[str], list[str]]:
    roles, statuses = _b_requests(r), [x["status"] for x in r.log("b")]
    if roles != ["assistant", "user"] or statuses != [400, 200]:
        return [f"b saw {list(zip(roles, statuses, strict=False))}"], []
    return [], ["b: 400 to the prefill, then regenerated"]


def prefill_continued(r: Rig, a: Answer) -> tuple[list[str], list[str]]:
    roles = _b_requests(r)
    if roles != ["assistant"]:
        return [f"b was asked {roles}, expected a prefill (assistant)"], []
    prefilled = r.log("b")[0]["request_body"]["messages"][-1]["content"]
    return [], [f"b continued a {len(prefilled)}-char prefill"]


def waited(r: Rig, a: Answer) -> tuple[list[str], list[str]]:
    log = r.log("p")
    if len(log) != 2 or log[0]["t_end"] is None:
        return [], []
    gap = log[1]["t_start"] - log[0]["t_end"]
    problems = [] if 1.0 <= gap < 2.0 else [f"waited {gap:.2f} s, not the Retry-After (1 s)"]
    return problems, [f"waited {gap:.2f} s on p"]


PLAIN = {"p": SimSpec(), "b": SimSpec()}
SAME_VOICE = {"p": SimSpec(voice=VOICE, chunk_interval_ms=5), "b": SimSpec(voice=VOICE)}
CUT = {"mode": "cut", "after_chunks": 8}
P = f"{MODEL}@p"
B = f"{MODEL}@b"
PHASE_MS = TIMEOUTS["headers_s"] * 1000


def cases() -> list[Case]:
    once_500 = {"p": {"mode": "status", "status": 500, "count": 1}}
    same = Expect("json", {"p": 2, "b": 0}, "2", P, text="p")
    spliced = Expect("complete", {"p": 1, "b": 1}, "1", P, text=VOICE)
    return [
        Case("1 json", "500 once on p", PLAIN, once_500, False, same),
        Case("1 stream", "500 once on p", PLAIN, once_500, True, Expect("complete", **_kw(same))),
        Case(
            "2",
            "429 Retry-After 1, once",
            PLAIN,
            {"p": {"mode": "status", "status": 429, "retry_after": 1, "count": 1}},
            False,
            Expect("json", {"p": 2, "b": 0}, "2", P, text="p", min_ms=1000, max_ms=2000),
            waited,
        ),
        Case(
            "3",
            "429 Retry-After 30",
            PLAIN,
            {"p": {"mode": "status", "status": 429, "retry_after": 30}},
            False,
            Expect("json", {"p": 1, "b": 1}, "2", B, text="b", max_ms=500),
        ),
        Case(
            "4",
            "429 Retry-After 0.5, every time",
            PLAIN,
            {"p": {"mode": "status", "status": 429, "retry_after": 0.5}},
            False,
            Expect("json", {"p": 2, "b": 1}, "3", B, text="b", min_ms=500, max_ms=1500),
        ),
        Case(
            "5", "connection reset once", PLAIN, {"p": {"mode": "reset", "count": 1}}, False, same
        ),
        Case(
            "6",
            "connect refused (p's port closed)",
            {"p": SimSpec(closed=True), "b": SimSpec()},
            {},
            False,
            Expect("json", {"b": 1}, "2", B, text="b", max_ms=500),
        ),
        Case(
            "7",
            "hang before headers (stream; headers_s 0.5 s)",
            PLAIN,
            {"p": {"mode": "hang"}},
            True,
            Expect(
                "complete",
                {"p": 1, "b": 1},
                "2",
                B,
                text="b",
                min_ms=PHASE_MS,
                max_ms=PHASE_MS + 700,
            ),
        ),
        Case(
            "8",
            "stream cut after 8 chunks; b same voice",
            SAME_VOICE,
            {"p": CUT},
            True,
            spliced,
            regenerated,
        ),
        Case(
            "9",
            "stream stall after 8 chunks",
            SAME_VOICE,
            {"p": {"mode": "stall", "after_chunks": 8}},
            True,
            Expect("complete", **_kw(spliced, min_ms=TIMEOUTS["idle_s"] * 1000)),
            regenerated,
        ),
        Case(
            "10",
            "1 malformed event after 8 chunks",
            SAME_VOICE,
            {"p": {"mode": "garbled", "after_chunks": 8, "times": 1}},
            True,
            Expect("complete", {"p": 1, "b": 0}, "1", P, text=VOICE),
        ),
        Case(
            "11",
            "4 malformed events after 8 chunks",
            SAME_VOICE,
            {"p": {"mode": "garbled", "after_chunks": 8, "times": 4}},
            True,
            spliced,
            regenerated,
        ),
        Case(
            "12",
            "stream cut; b another voice",
            {"p": SimSpec(voice=VOICE, chunk_interval_ms=5), "b": SimSpec(voice="someone-else")},
            {"p": CUT},
            True,
            Expect("error upstream_cut", {"p": 1, "b": 1}, "1", P, text=f"partial:{VOICE}"),
            diverged,
        ),
        Case(
            "13",
            "stream cut; b `supports: [prefill]` but rejects it",
            {
                "p": SimSpec(voice=VOICE, chunk_interval_ms=5),
                "b": SimSpec(voice=VOICE, prefill="reject", supports=("prefill",)),
            },
            {"p": CUT},
            True,
            Expect("complete", {"p": 1, "b": 2}, "1", P, text=VOICE),
            prefill_refused,
        ),
        Case(
            "14",
            "stream cut; b continues a prefill",
            {
                "p": SimSpec(voice=VOICE, chunk_interval_ms=5),
                "b": SimSpec(voice=VOICE, prefill="continue", supports=("prefill",)),
            },
            {"p": CUT},
            True,
            spliced,
            prefill_continued,
        ),
    ]


def _kw(e: Expect, **changes: Any) -> dict[str, Any]:
    """`e`'s fields but `got`, with `changes`: for an Expect that differs in a few."""
    fields = {
        "attempts": e.attempts,
        "header": e.header,
        "target": e.target,
        "text": e.text,
        "min_ms": e.min_ms,
        "max_ms": e.max_ms,
    }
    return {**fields, **changes}


# --- steady traffic -------------------------------------------------------------------------


async def steady(
    r: Rig, *, callers: int, interval_s: float, until: float, stream: bool
) -> list[Answer]:
    """`callers` callers, each sending a request every `interval_s` (or right after the last
    answer when it took longer) until `until` (monotonic)."""
    answers: list[Answer] = []

    async def caller(k: int) -> None:
        await asyncio.sleep(interval_s * k / callers)
        while (now := time.monotonic()) < until:
            answers.append(await r.post(stream=stream))
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - now)))

    await asyncio.gather(*(caller(k) for k in range(callers)))
    return sorted(answers, key=lambda x: x.started)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _served(a: Answer) -> bool:
    return a.complete()


async def outage(opts: Options) -> Row:
    """15: p answers 503 for a while under steady traffic (one request per ~100 ms), then
    recovers; b serves meanwhile. Errors, probes, recovery time and the slow-start ramp."""
    outage_s = 1.5 if opts.quick else 3.0
    ramp_s = float(BREAKER["slow_start_s"])
    row = Row(
        "15",
        f"p 503 for {outage_s:g} s under steady traffic (10 req/s), then recovers",
        "0 errors; p back < 1.5 s after recovery; probes 1 per open time; "
        "p's share grows over the ramp, ≥ 0.8 after it",
    )
    async with rig(PLAIN) as r:
        t0 = time.monotonic()
        down_at, up_at = t0 + 0.5, t0 + 0.5 + outage_s
        end = up_at + 1.5 + ramp_s + 1.0

        async def script() -> None:
            await asyncio.sleep(max(0.0, down_at - time.monotonic()))
            r.set_fault("p", {"mode": "status", "status": 503})
            await asyncio.sleep(max(0.0, up_at - time.monotonic()))
            r.set_fault("p", {"mode": "ok"})

        answers, _ = await asyncio.gather(
            steady(r, callers=1, interval_s=0.1, until=end, stream=False), script()
        )
        events = await r.breaker_events()
        p_log = r.log("p")
    during = [a for a in answers if down_at <= a.started < up_at]
    errors = [a for a in answers if not _served(a)]
    opened = [e for e in events if e["target"] == "m@p" and e["to"] == "open"]
    trips = [e for e in opened if e["from"] == "closed"]
    closed = [e for e in events if e["target"] == "m@p" and e["to"] == "closed"]
    trip = opened[0]["mono"] if opened else math.inf
    probes = [x for x in p_log if trip < x["t_start"] < up_at]
    first_p = next((a for a in answers if a.started >= up_at and a.target == "m@p"), None)
    back_s = first_p.started + first_p.elapsed_s - up_at if first_p else math.inf
    ramp_from = next((e["mono"] for e in closed if e["mono"] >= up_at), math.inf)

    def share(lo: float, hi: float) -> tuple[float, int]:
        window = [a for a in answers if ramp_from + lo <= a.started < ramp_from + hi]
        on_p = sum(1 for a in window if a.target == "m@p")
        return (on_p / len(window) if window else math.nan), len(window)

    first, n_first = share(0.0, 1.0)
    last, n_last = share(ramp_s - 1.0, ramp_s)
    after, n_after = share(ramp_s, math.inf)
    max_probes = outage_s / float(BREAKER["open_s"]) + 2
    row.got = (
        f"{len(answers) - len(errors)}/{len(answers)} answered; {len(during)} during the outage"
    )
    row.text = _exact(answers)
    row.attempts = f"p {len(p_log)} · b {len(r.log('b'))}; probes during the outage {len(probes)}"
    row.header = _header_counts(answers)
    row.target = _by_target(answers)
    during_ms = [a.ms for a in during]
    row.ms = f"outage p50 {_pct(during_ms, 50):.0f} · max {max(during_ms, default=math.nan):.0f}"
    row.notes = (
        f"errors during the outage {sum(1 for a in during if not _served(a))}; "
        f"p serving again {back_s * 1000:.0f} ms after recovery, breaker closed after "
        f"{(ramp_from - up_at) * 1000:.0f} ms; "
        f"ramp share of p: first second {first:.2f} (n={n_first}), last second {last:.2f} "
        f"(n={n_last}), after {after:.2f} (n={n_after}); trips {len(trips)}, "
        f"reopened by a failed probe {len(opened) - len(trips)}"
    )
    if errors:
        row.problems.append(f"{len(errors)} errors: {sorted({a.got() for a in errors})}")
    if not back_s < 1.5:
        row.problems.append(f"p serving again after {back_s:.2f} s")
    if not 1 <= len(probes) <= max_probes:
        row.problems.append(f"{len(probes)} probes during the outage (1..{max_probes:.0f})")
    if not first < last:
        row.problems.append(f"no ramp: share first {first:.2f} ≥ last {last:.2f}")
    if not after >= 0.8:
        row.problems.append(f"p's share after the ramp {after:.2f} < 0.8")
    row.measures = {
        "requests": len(answers),
        "errors": len(errors),
        "during_outage": len(during),
        "probes": len(probes),
        "back_s": back_s,
        "closed_after_s": ramp_from - up_at,
        "share_first": first,
        "share_last": last,
        "share_after": after,
        "trips": len(trips),
        "transitions": [{k: e[k] for k in ("to", "reason", "mono")} for e in events],
    }
    return row


async def hang_under_load(opts: Options) -> Row:
    """16: p starts hanging (no headers) under steady streaming load from a few callers."""
    hang_s = 1.5 if opts.quick else 3.0
    callers = 4
    limit_ms = PHASE_MS + 1000
    row = Row(
        "16",
        f"p starts hanging for {hang_s:g} s under load ({callers} streaming callers)",
        f"0 errors; max time to answer < {limit_ms:.0f} ms",
    )
    async with rig(PLAIN) as r:
        hang_at = time.monotonic() + 0.5
        until = hang_at + hang_s

        async def script() -> None:
            await asyncio.sleep(max(0.0, hang_at - time.monotonic()))
            r.set_fault("p", {"mode": "hang"})

        answers, _ = await asyncio.gather(
            steady(r, callers=callers, interval_s=0.05, until=until, stream=True), script()
        )
        p_during = r.log("p", hang_at)
        events = await r.breaker_events()
    after = [a for a in answers if a.started >= hang_at]
    errors = [a for a in after if not _served(a)]
    ms = [a.ms for a in after]
    slow = [a for a in after if a.ms >= PHASE_MS]
    trips = [
        e for e in events if e["target"] == "m@p" and e["to"] == "open" and e["from"] == "closed"
    ]
    row.got = f"{len(after) - len(errors)}/{len(after)} complete after the hang began"
    row.text = _exact(after)
    b_during = len(r.log("b", hang_at))
    row.attempts = f"p {len(p_during)} [hang] · b {b_during} (after the hang began)"
    row.header = _header_counts(after)
    row.target = _by_target(after)
    row.ms = f"p50 {_pct(ms, 50):.0f} · max {max(ms, default=math.nan):.0f}"
    row.notes = (
        f"{len(slow)} callers paid the {PHASE_MS:.0f} ms timeout; breaker tripped "
        f"{len(trips)}x; {len(answers)} requests in all"
    )
    if errors:
        row.problems.append(f"{len(errors)} errors: {sorted({a.got() for a in errors})}")
    if not max(ms, default=0) < limit_ms:
        row.problems.append(f"max {max(ms):.0f} ms ≥ {limit_ms:.0f}")
    if not after:
        row.problems.append("no request after the hang began")
    row.measures = {
        "requests_after": len(after),
        "errors": len(errors),
        "p50_ms": _pct(ms, 50),
        "max_ms": max(ms, default=math.nan),
        "paid_timeout": len(slow),
        "p_attempts": len(p_during),
    }
    return row


def _by_target(answers: list[Answer]) -> str:
    on_p = sum(1 for a in answers if a.target == P)
    on_b = sum(1 for a in answers if a.target == B)
    return f"p {on_p} · b {on_b}"


def _exact(answers: list[Answer]) -> str:
    """How many answers are complete and carry their target's full answer, exactly."""
    n = sum(1 for a in answers if _served(a) and a.text() == full_answer(a.target.split("@")[-1]))
    return f"{n}/{len(answers)} exact"


def _header_counts(answers: list[Answer]) -> str:
    counts: dict[str, int] = {}
    for a in answers:
        counts[a.attempts or "-"] = counts.get(a.attempts or "-", 0) + 1
    return ", ".join(f"{k}: {v}x" for k, v in sorted(counts.items()))


Runner = Callable[[Options], Awaitable[Row]]
LOADS: list[tuple[str, Runner]] = [("15", outage), ("16", hang_under_load)]
