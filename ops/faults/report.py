"""One row per fault, as a Markdown table (pasteable into an issue note) and as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

COLUMNS = (
    ("#", "id"),
    ("fault", "fault"),
    ("expected", "expected"),
    ("caller got", "got"),
    ("text = full answer", "text"),
    ("attempts on p · b (sim logs)", "attempts"),
    ("x-turnout-attempts", "header"),
    ("x-turnout-target", "target"),
    ("time to answer ms", "ms"),
    ("notes", "notes"),
    ("verdict", "verdict"),
)


@dataclass
class Row:
    id: str
    fault: str
    expected: str
    got: str = ""
    text: str = ""
    attempts: str = ""
    header: str = ""
    target: str = ""
    ms: str = ""
    notes: str = ""
    problems: list[str] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else "**MISMATCH**: " + "; ".join(self.problems)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def markdown(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = [_cell(str(getattr(row, key))) for _, key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[Row], seconds: float, command: str) -> str:
    bad = [r for r in rows if not r.ok]
    lines = [
        f"{len(rows)} rows, {len(rows) - len(bad)} as expected, {len(bad)} MISMATCH; "
        f"{seconds:.1f} s (`{command}`)"
    ]
    for r in bad:
        lines.append(f"- MISMATCH {r.id} ({r.fault}): " + "; ".join(r.problems))
    return "\n".join(lines)
