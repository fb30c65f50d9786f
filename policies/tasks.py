"""Task categories from configurable rules: keywords and regexes on the last user turn and the
system prompt. The first rule that matches names the task; none matching gives the default.

Cheap by construction: each text is cut to `scan_chars` (its head and tail halves), keywords
are case-insensitive substring tests on the lowered text, and regexes are compiled at load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from policies.params import Issue, join
from policies.types import DEFAULT_TASK

SCOPES = ("user", "system")
SCAN_CHARS = 8192
TASK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class TaskRule:
    """Names `task` when any keyword or pattern is found in the texts of `scopes`."""

    task: str
    keywords: tuple[str, ...] = ()  # lowered; substrings
    patterns: tuple[re.Pattern[str], ...] = ()
    scopes: tuple[str, ...] = SCOPES

    def matches(self, lowered: Mapping[str, str], texts: Mapping[str, str]) -> bool:
        for scope in self.scopes:
            low = lowered[scope]
            if low and any(k in low for k in self.keywords):
                return True
            text = texts[scope]
            if text and any(p.search(text) for p in self.patterns):
                return True
        return False


@dataclass(frozen=True, slots=True)
class TaskRules:
    rules: tuple[TaskRule, ...]
    default: str = DEFAULT_TASK
    scan_chars: int = SCAN_CHARS

    def _cut(self, text: str) -> str:
        if len(text) <= self.scan_chars:
            return text
        half = self.scan_chars // 2
        return text[:half] + "\n" + text[-half:]

    def classify(self, user: str, system: str) -> str:
        """The task of a request whose last user turn is `user` and system prompt `system`."""
        if not self.rules:
            return self.default
        texts = {"user": self._cut(user), "system": self._cut(system)}
        lowered = {k: v.lower() for k, v in texts.items()}
        for rule in self.rules:
            if rule.matches(lowered, texts):
                return rule.task
        return self.default


def _rule(
    task: str,
    keywords: tuple[str, ...],
    patterns: tuple[str, ...] = (),
    scopes: tuple[str, ...] = SCOPES,
) -> TaskRule:
    return TaskRule(
        task,
        tuple(k.lower() for k in keywords),
        tuple(re.compile(p) for p in patterns),
        scopes,
    )


# The documented default rule set (docs/policies.md); order matters: first match wins.
DEFAULT_TASK_RULES = TaskRules(
    rules=(
        _rule(
            "code",
            (
                "```",
                "traceback",
                "stack trace",
                "syntax error",
                "compiler",
                "refactor",
                "unit test",
                "python",
                "javascript",
                "typescript",
                "golang",
                "c++",
                "java",
                "sql",
                "regex",
                "bash",
                "in rust",
                "rust code",
                "coding",
                "programming",
                "source code",
                "this code",
                "the code",
            ),
            (r"(?:def|func?|function|class) +\w+ *[(:{]", r"(?m)^(?:import|from|#include) +\w"),
        ),
        _rule(
            "math",
            (
                "solve for",
                "equation",
                "integral",
                "derivative",
                "prove that",
                "proof",
                "theorem",
                "probability",
                "arithmetic",
                "algebra",
                "geometry",
            ),
            (r"\d *[-+*/^] *\d+ *=", r"\\(?:frac|sum|int|sqrt)"),
        ),
        _rule(
            "extraction",
            (
                "extract",
                "json",
                "named entities",
                "parse the",
                "pull out",
                "fill in the fields",
                "structured data",
            ),
            scopes=("user",),
        ),
        _rule(
            "summarization",
            ("summarize", "summarise", "summary", "tl;dr", "tldr", "key points", "condense"),
            scopes=("user",),
        ),
        _rule(
            "reasoning",
            (
                "step by step",
                "think carefully",
                "reason about",
                "explain why",
                "trade-off",
                "tradeoff",
                "pros and cons",
                "analyze",
                "analyse",
                "puzzle",
                "riddle",
                "plan for",
                "compare",
            ),
        ),
    ),
)


def _strings(raw: object, path: str, issues: list[Issue]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        issues.append((path, "expected a list of strings"))
        return []
    out: list[str] = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item:
            out.append(item)
        else:
            issues.append((join(path, i), "expected a non-empty string"))
    return out


def _decode_rule(raw: object, path: str, issues: list[Issue]) -> TaskRule | None:
    if not isinstance(raw, Mapping):
        issues.append((path, "expected a mapping with task, keywords and/or patterns"))
        return None
    for key in raw:
        if key not in ("task", "keywords", "patterns", "in"):
            issues.append(
                (join(path, str(key)), "unknown key (known: task, keywords, patterns, in)")
            )
    task = raw.get("task")
    if not isinstance(task, str) or not TASK_NAME.fullmatch(task):
        issues.append((join(path, "task"), "required: a lowercase name such as 'code'"))
    keywords = _strings(raw.get("keywords"), join(path, "keywords"), issues)
    patterns: list[re.Pattern[str]] = []
    for i, p in enumerate(_strings(raw.get("patterns"), join(path, "patterns"), issues)):
        try:
            patterns.append(re.compile(p))
        except re.error as exc:
            issues.append((join(join(path, "patterns"), i), f"invalid regex: {exc}"))
    if not keywords and not patterns and "keywords" not in raw and "patterns" not in raw:
        issues.append((path, "needs keywords or patterns"))
    scopes = _strings(raw.get("in"), join(path, "in"), issues) or list(SCOPES)
    for i, s in enumerate(scopes):
        if s not in SCOPES:
            issues.append((join(join(path, "in"), i), f"expected one of {', '.join(SCOPES)}"))
    if not isinstance(task, str):
        return None
    return TaskRule(task, tuple(k.lower() for k in keywords), tuple(patterns), tuple(scopes))


def decode_task_rules(raw: object, path: str) -> tuple[TaskRules | None, list[Issue]]:
    """`{default: chat, scan_chars: 16384, rules: [{task, keywords, patterns, in}]}`; no
    value means the default rule set, `rules: []` means every request is `default`."""
    if raw is None:
        return DEFAULT_TASK_RULES, []
    if not isinstance(raw, Mapping):
        return None, [(path, "expected a mapping with default, scan_chars and rules")]
    issues: list[Issue] = []
    for key in raw:
        if key not in ("default", "scan_chars", "rules"):
            issues.append((join(path, str(key)), "unknown key (known: default, rules, scan_chars)"))
    default = raw.get("default", DEFAULT_TASK)
    if not isinstance(default, str) or not TASK_NAME.fullmatch(default):
        issues.append((join(path, "default"), "expected a lowercase task name"))
        default = DEFAULT_TASK
    scan = raw.get("scan_chars", SCAN_CHARS)
    if isinstance(scan, bool) or not isinstance(scan, int) or not 64 <= scan <= 10_000_000:
        issues.append((join(path, "scan_chars"), "expected an integer from 64 to 10000000"))
        scan = SCAN_CHARS
    rules_raw = raw.get("rules")
    if rules_raw is None:
        rules = DEFAULT_TASK_RULES.rules
    elif not isinstance(rules_raw, list):
        issues.append((join(path, "rules"), "expected a list"))
        rules = ()
    else:
        decoded = [
            _decode_rule(r, join(join(path, "rules"), i), issues) for i, r in enumerate(rules_raw)
        ]
        rules = tuple(r for r in decoded if r is not None)
    if issues:
        return None, issues
    return TaskRules(rules, default, scan), []
