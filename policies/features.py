"""Request features, extracted once per request from the parsed body. Cheap: no tokenizer.

One pass over the messages counts characters (÷ 4 ≈ tokens), notes images, and keeps the last
user turn and the system prompt for the task rules. A chat request comes in either shape:
`messages` (Chat Completions, the Messages API) or the Responses API's `input` and
`instructions` (`turns`). Per-request routing overrides come from
headers (`x-turnout-task`, `x-turnout-max-cost`, `x-turnout-quality-floor`) or, when
no header is set, from the body's `metadata` (`task`, `max_cost`, `quality_floor`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from policies.tasks import DEFAULT_TASK_RULES, TASK_NAME, TaskRules
from policies.types import EVERYTHING, NO_METADATA, REQUEST, TASK, RequestFeatures

CHARS_PER_TOKEN = 4
MAX_METADATA = 16  # OpenAI's own limit on `metadata` pairs
HEADERS = {
    "task": "x-turnout-task",
    "max_cost": "x-turnout-max-cost",
    "quality_floor": "x-turnout-quality-floor",
}


class InvalidFeature(ValueError):
    """A per-request routing override is malformed; the gateway answers 400 naming `param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _text(content: Any) -> tuple[str, bool]:
    """The text of a message's content, and whether it holds an image."""
    if isinstance(content, str):
        return content, False
    parts: list[str] = []
    image = False
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                if part.get("type") in ("image_url", "input_image", "image"):  # OpenAI, Anthropic
                    image = True
    return "\n".join(parts), image


def turns(body: Mapping[str, Any]) -> list[Any]:
    """A chat request's turns as messages (`role`, `content`), whichever shape it comes in:
    its `messages` as they are, or the Responses API's `instructions` (a system turn) and
    `input` (a string: one user turn; items: their messages, and a function call's output
    as a tool turn)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return messages  # the usual case: nothing built
    out: list[Any] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        out.append({"role": "system", "content": instructions})
    raw = body.get("input")
    if isinstance(raw, str):
        out.append({"role": "user", "content": raw})
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, Mapping) and item.get("type") == "function_call_output":
            out.append({"role": "tool", "content": item.get("output")})
        else:
            out.append(item)
    return out


def _metadata(body: Mapping[str, Any]) -> Mapping[str, str]:
    raw = body.get("metadata")
    if not isinstance(raw, Mapping) or not raw:
        return NO_METADATA
    out = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
    return MappingProxyType(dict(list(out.items())[:MAX_METADATA]))


def _override(
    key: str, headers: Mapping[str, str] | None, metadata: Mapping[str, str]
) -> tuple[str, str] | None:
    """(where it came from, value) of a routing override, the header winning."""
    header = HEADERS[key]
    if headers is not None:
        value = headers.get(header)
        if value is not None:
            return header, value
    value = metadata.get(key)
    return None if value is None else (f"metadata.{key}", value)


def _number(
    key: str, lo: float, hi: float, headers: Mapping[str, str] | None, meta: Mapping[str, str]
) -> float | None:
    found = _override(key, headers, meta)
    if found is None:
        return None
    where, raw = found
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:  # also NaN
        raise InvalidFeature(where, f"{where} must be a number from {lo:g} to {hi:g}.")
    return value


def _task(
    rules: TaskRules,
    user: str,
    system: str,
    headers: Mapping[str, str] | None,
    meta: Mapping[str, str],
    classify: bool,
) -> str:
    found = _override("task", headers, meta)
    if found is None:
        return rules.classify(user, system) if classify else rules.default
    where, raw = found
    task = raw.strip().lower()
    if not TASK_NAME.fullmatch(task):
        raise InvalidFeature(where, f"{where} must be a task name such as 'code'.")
    return task


@functools.lru_cache(maxsize=64)
def _bare(operation: str, task: str) -> RequestFeatures:
    """The features of a request with no overrides and no metadata, for a policy that reads
    neither the task nor the request: frozen, so one value serves every such request."""
    return RequestFeatures(operation, task=task)


def is_bare(features: RequestFeatures) -> bool:
    """Whether `features` are a request's with no overrides and no metadata: the shared
    value `extract` hands a policy that reads neither the task nor the request."""
    return features is _bare(features.operation, features.task)


def extract(
    operation: str,
    body: Mapping[str, Any],
    body_bytes: int,
    *,
    rules: TaskRules = DEFAULT_TASK_RULES,
    headers: Mapping[str, str] | None = None,
    reads: frozenset[str] = EVERYTHING,
) -> RequestFeatures:
    """The features of one request that a policy reading `reads` needs (`policies.types`).
    Raises InvalidFeature for a malformed routing override, whatever the policy reads.

    `headers` must look names up case-insensitively (aiohttp's do) or hold lowercase names.
    Without TASK the task rules are not run: the task is the override, if any, else the
    rules' default. Without TASK or REQUEST the body is not scanned at all.
    """
    meta = _metadata(body)
    classify = TASK in reads
    if not classify and REQUEST not in reads:  # the overrides alone, checked in the same order
        task = (
            rules.default
            if operation == "embeddings"
            else _task(rules, "", "", headers, meta, False)
        )
        max_cost = _number("max_cost", 0.0, 1e6, headers, meta)
        floor = _number("quality_floor", 0.0, 1.0, headers, meta)
        if max_cost is None and floor is None and meta is NO_METADATA:
            return _bare(operation, task)  # the usual request: one shared value
        return RequestFeatures(
            operation, task=task, max_cost=max_cost, quality_floor=floor, metadata=meta
        )
    chars, images = 0, False
    user, system = "", ""
    if operation == "chat":
        for m in turns(body):
            if type(m) is dict or isinstance(m, Mapping):
                text, img = _text(m.get("content"))
                chars += len(text)
                images = images or img
                role = m.get("role")
                if role == "user":
                    user = text
                elif role in ("system", "developer") and not system:
                    system = text
    elif operation == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            user = prompt
        elif isinstance(prompt, list):
            user = "\n".join(p for p in prompt if isinstance(p, str))
        chars = len(user)
    else:
        chars = body_bytes
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = body.get("max_output_tokens")  # the Responses API's
    fmt = body.get("response_format")
    text_options = body.get("text")  # the Responses API's `text.format`
    if fmt is None and isinstance(text_options, Mapping):
        fmt = text_options.get("format")
    json_output = isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")
    return RequestFeatures(
        operation=operation,
        estimated_input_tokens=chars // CHARS_PER_TOKEN + 1,
        max_tokens=max_tokens
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
        else None,
        stream=body.get("stream") is True,
        tools=bool(body.get("tools") or body.get("functions")),
        images=images,
        json_output=json_output,
        task=_task(rules, user, system, headers, meta, classify)
        if operation != "embeddings"
        else rules.default,
        max_cost=_number("max_cost", 0.0, 1e6, headers, meta),
        quality_floor=_number("quality_floor", 0.0, 1.0, headers, meta),
        metadata=meta,
    )
