"""What the sim's Anthropic endpoints answer (``POST /v1/messages``, ``GET /v1/models``),
before any fault shapes the delivery.

The answer text is the OpenAI sim's for the same voice, model and prompt (the last user turn's
text), so answers can be compared, and continuations spliced, across the two formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.sim import answers, tools
from gateway.sim import anthropic_wire as aw
from gateway.sim.endpoints import Reply
from gateway.sim.state import SimSettings

ROLES = ("user", "assistant")


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, orjson.dumps(aw.error_body(status, message)))


def _bad(message: str) -> Reply:
    return error_reply(400, message)


def _block_problem(block: Any, where: str) -> str | None:
    if not isinstance(block, Mapping):
        return f"{where}: Input should be a valid dictionary or object"
    kind = block.get("type")
    if not isinstance(kind, str):
        return f"{where}.type: Field required"
    if kind == "text" and not isinstance(block.get("text"), str):
        return f"{where}.text: Input should be a valid string"
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        return f"{where}.tool_use_id: Field required"
    if kind == "tool_use" and not isinstance(block.get("id"), str):
        return f"{where}.id: Field required"
    return None


def _message_problem(message: Any, where: str) -> str | None:
    if not isinstance(message, Mapping):
        return f"{where}: Input should be a valid dictionary or object"
    if message.get("role") not in ROLES:
        return f"{where}.role: Input should be 'user' or 'assistant'"
    if "content" not in message:
        return f"{where}.content: Field required"
    content = message["content"]
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"{where}.content: Input should be a valid list"
    for i, block in enumerate(content):
        problem = _block_problem(block, f"{where}.content.{i}")
        if problem is not None:
            return problem
    return None


def validation_problem(body: Mapping[str, Any]) -> str | None:
    """What the real API would reject in a Messages request (its message), or None."""
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    model = body["model"]
    if not isinstance(model, str) or not model:
        return "model: Input should be a valid string"
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return "max_tokens: Input should be a valid integer"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = body["messages"]
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        problem = _message_problem(message, f"messages.{i}")
        if problem is not None:
            return problem
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            return "system: Input should be a valid string or a list of text blocks"
        for i, block in enumerate(system):
            if not isinstance(block, Mapping) or block.get("type") != "text":
                return f"system.{i}.type: Input should be 'text'"
            if not isinstance(block.get("text"), str):
                return f"system.{i}.text: Input should be a valid string"
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return "stream: Input should be a valid boolean"
    return None


def _prefill(settings: SimSettings, messages: list[Any]) -> str | Reply | None:
    """The prefilled text to continue, a 400, or None (answer from scratch)."""
    last = messages[-1]
    if last.get("role") != "assistant" or settings.prefill == "ignore":
        return None
    if settings.prefill == "reject":
        return _bad(
            "messages: This model does not support assistant message prefill. The "
            "conversation must end with a user message."
        )
    text = answers.content_text(last.get("content"))
    if text != text.rstrip():
        return _bad("messages: final assistant content cannot end with trailing whitespace")
    return text


def messages(settings: SimSettings, body: dict[str, Any]) -> Reply:
    """``POST /v1/messages``: a message (or its event stream) with the deterministic answer, or
    one tool call (``tools: call``)."""
    problem = validation_problem(body)
    if problem is not None:
        return _bad(problem)
    model: str = body["model"]
    prefilled = _prefill(settings, body["messages"])
    if isinstance(prefilled, Reply):
        return prefilled
    stream = body.get("stream") is True
    mid = aw.new_id()
    input_tokens = answers.prompt_tokens_of(body)
    call = tools.anthropic_call(body) if settings.tools == "call" else None
    if call is not None:
        if stream:
            return _events(aw.tool_use_events(mid, model, call, input_tokens))
        use = aw.usage(input_tokens, call.output_tokens())
        content = [aw.tool_use_block(call)]
        return _json(aw.message(mid, model, content, "tool_use", use))
    voice = settings.voice or settings.name
    words = answers.answer_words(voice, model, answers.prompt_of(body), settings.n_words)
    if prefilled is not None:
        words = answers.continuation(words, prefilled)
    words, stop = answers.stop_at(words, body.get("stop_sequences"))
    text = "".join(words)
    output_tokens = answers.count_tokens(text)
    if stream:
        return _events(aw.text_events(mid, model, words, input_tokens, output_tokens, stop))
    use = aw.usage(input_tokens, output_tokens)
    content = [{"type": "text", "text": text}]
    reason = "end_turn" if stop is None else "stop_sequence"
    return _json(aw.message(mid, model, content, reason, use, stop))


def list_models(settings: SimSettings, body: dict[str, Any]) -> Reply:
    return _json(aw.models(settings.models))


def _json(obj: Any) -> Reply:
    return Reply(200, orjson.dumps(obj))


def _events(events: list[dict[str, Any]]) -> Reply:
    return Reply(200, events=[aw.sse(event) for event in events])
