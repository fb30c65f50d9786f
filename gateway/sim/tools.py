"""Tool calls for the ``tools: call`` setting, in every wire format.

A request that offers tools, does not set its tool choice to "none", and ends with the user's
turn (not a tool result, not a prefill) is answered with one call to the forced tool, else the
first tool offered, with the input ``{"query": <the prompt>}``. The call's id is derived from
the prompt alone, so the OpenAI (``call_<hash>``) and Anthropic (``toolu_<hash>``) sims give
the same hash for the same prompt; the Gemini sim's call has no id, as Gemini 2.x models' have
none (the gateway derives one).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.sim import answers

ID_HASH_CHARS = 24


@dataclass(frozen=True)
class ToolCall:
    """The one tool call the sim answers with."""

    name: str
    id_hash: str  # the id without its format's prefix
    arguments: str  # the input as JSON text

    @property
    def input(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.arguments)
        return parsed

    def pieces(self) -> list[str]:
        """``arguments`` in (up to) three pieces, as a model streams them."""
        text = self.arguments
        cuts = [0, len(text) // 3, 2 * len(text) // 3, len(text)]
        return [text[a:b] for a, b in itertools.pairwise(cuts) if b > a]

    def output_tokens(self) -> int:
        return max(1, answers.count_tokens(self.arguments))


def id_hash(prompt: str) -> str:
    """The deterministic part of a tool call's id for ``prompt``."""
    return hashlib.sha256(("tool-call\x00" + prompt).encode()).hexdigest()[:ID_HASH_CHARS]


def _call(name: str, body: Mapping[str, Any]) -> ToolCall:
    prompt = answers.prompt_of(body)
    arguments = orjson.dumps({"query": prompt}).decode()
    return ToolCall(name=name, id_hash=id_hash(prompt), arguments=arguments)


def _offered(body: Mapping[str, Any]) -> tuple[list[Any], Mapping[str, Any]] | None:
    """(the tools offered, the last message) when the request offers tools and its last turn
    is the user's (either format); None otherwise."""
    tools = body.get("tools")
    messages = body.get("messages")
    if not isinstance(tools, list) or not tools or not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return None
    return tools, last


def openai_call(body: Mapping[str, Any]) -> ToolCall | None:
    """The call for an OpenAI chat request, or None when it is to be answered with text."""
    offered = _offered(body)
    if offered is None:
        return None
    tools, _ = offered
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    name: Any = None
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
    if not isinstance(name, str):
        first = tools[0]
        function = first.get("function") if isinstance(first, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
    return _call(name, body) if isinstance(name, str) and name else None


def anthropic_call(body: Mapping[str, Any]) -> ToolCall | None:
    """The call for an Anthropic Messages request, or None when it is to be answered with
    text."""
    offered = _offered(body)
    if offered is None:
        return None
    tools, last = offered
    content = last.get("content")
    if isinstance(content, list) and any(
        isinstance(b, Mapping) and b.get("type") == "tool_result" for b in content
    ):
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "none":
        return None
    name: Any = None
    if isinstance(choice, Mapping) and choice.get("type") == "tool":
        name = choice.get("name")
    if not isinstance(name, str):
        first = tools[0]
        name = first.get("name") if isinstance(first, Mapping) else None
    return _call(name, body) if isinstance(name, str) and name else None


def gemini_call(body: Mapping[str, Any]) -> ToolCall | None:
    """The call for a Gemini ``generateContent`` request, or None when it is to be answered
    with text: ``toolConfig.functionCallingConfig`` mode ``NONE`` answers with text, ``ANY``
    with ``allowedFunctionNames`` calls the first of those."""
    tools = body.get("tools")
    contents = body.get("contents")
    declared = [
        d
        for t in (tools if isinstance(tools, list) else ())
        if isinstance(t, Mapping) and isinstance(t.get("functionDeclarations"), list)
        for d in t["functionDeclarations"]
        if isinstance(d, Mapping)
    ]
    if not declared or not isinstance(contents, list) or not contents:
        return None
    last = contents[-1]
    if not isinstance(last, Mapping) or last.get("role", "user") != "user":
        return None
    parts = last.get("parts")
    if isinstance(parts, list) and any(
        isinstance(p, Mapping) and "functionResponse" in p for p in parts
    ):
        return None
    config = body.get("toolConfig")
    calling = config.get("functionCallingConfig") if isinstance(config, Mapping) else None
    calling = calling if isinstance(calling, Mapping) else {}
    if calling.get("mode") == "NONE":
        return None
    allowed = calling.get("allowedFunctionNames")
    name: Any = declared[0].get("name")
    if calling.get("mode") == "ANY" and isinstance(allowed, list) and allowed:
        name = allowed[0]
    return _call(name, body) if isinstance(name, str) and name else None
