"""What the sim's Gemini endpoints answer (``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent``, ``GET /v1beta/models``), before any fault shapes the delivery.

The answer text is the OpenAI sim's for the same voice, model and prompt (the last user turn's
text), so answers can be compared, and continuations spliced, across formats. Requests are
checked as strictly as the real API checks them: a field it does not know is a 400
(``Invalid JSON payload received. Unknown name ...``), so a gateway that sends one fails here
as it would there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson

from gateway.sim import answers, tools
from gateway.sim import gemini_wire as gw
from gateway.sim.endpoints import Reply
from gateway.sim.state import SimSettings


def _names(*camel: str) -> frozenset[str]:
    """The fields by their JSON names and their proto names (the API takes either)."""
    snake = ("".join(f"_{c.lower()}" if c.isupper() else c for c in n) for n in camel)
    return frozenset((*camel, *snake))


_REQUEST = _names(
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "safetySettings",
    "generationConfig",
    "cachedContent",
)
_GENERATION = _names(
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
    "speechConfig",
)
_DATA = _names(
    "text",
    "inlineData",
    "functionCall",
    "functionResponse",
    "fileData",
    "executableCode",
    "codeExecutionResult",
)
_PART = _DATA | _names("thought", "thoughtSignature", "videoMetadata", "partMetadata")
_CONTENT = _names("role", "parts")
_ROLES = ("user", "model")
Stream = Literal["sse", "array"] | None


def error_reply(status: int, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    return Reply(status, orjson.dumps(gw.error_body(status, message, details)))


def _unknown(keys: Any, known: frozenset[str], where: str) -> str | None:
    for key in keys:
        if key not in known:
            at = f"'{where}'" if where else "root"
            return (
                f'Invalid JSON payload received. Unknown name "{key}" at {at}: Cannot find field.'
            )
    return None


def _part_problem(part: Any, where: str) -> str | None:
    if not isinstance(part, Mapping):
        return f"Invalid value at '{where}': a part must be an object"
    unknown = _unknown(part, _PART, where)
    if unknown is not None:
        return unknown
    data = [k for k in part if k in _DATA]
    if len(data) != 1:
        return f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
    call = part.get("functionCall") or part.get("functionResponse")
    if call is not None and not (isinstance(call, Mapping) and isinstance(call.get("name"), str)):
        return f"* GenerateContentRequest.{where}.{data[0]}.name: Name cannot be empty."
    response = part.get("functionResponse")
    if isinstance(response, Mapping) and not isinstance(response.get("response", {}), Mapping):
        return f"Invalid value at '{where}.function_response.response': must be an object"
    return None


def _content_problem(content: Any, where: str) -> str | None:
    if not isinstance(content, Mapping):
        return f"Invalid value at '{where}': a content must be an object"
    unknown = _unknown(content, _CONTENT, where)
    if unknown is not None:
        return unknown
    if content.get("role", "user") not in _ROLES:
        return f"* GenerateContentRequest.{where}.role: Please use a valid role: user, model."
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
    for i, part in enumerate(parts):
        problem = _part_problem(part, f"{where}.parts[{i}]")
        if problem is not None:
            return problem
    return None


def validation_problem(body: Mapping[str, Any]) -> str | None:
    """What the real API would reject in a generateContent request (its message), or None."""
    unknown = _unknown(body, _REQUEST, "")
    if unknown is not None:
        return unknown
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        problem = _content_problem(content, f"contents[{i}]")
        if problem is not None:
            return problem
    instruction = body.get("systemInstruction", body.get("system_instruction"))
    if instruction is not None:
        problem = _content_problem(instruction, "system_instruction")
        if problem is not None:
            return problem
    config = body.get("generationConfig", body.get("generation_config", {}))
    if not isinstance(config, Mapping):
        return "Invalid value at 'generation_config': must be an object"
    return _unknown(config, _GENERATION, "generation_config")


def _prefill(settings: SimSettings, contents: list[Any]) -> str | Reply | None:
    """The prefilled text to continue (a last ``model`` turn), a 400, or None."""
    last = contents[-1]
    if last.get("role") != "model" or settings.prefill == "ignore":
        return None
    if settings.prefill == "reject":
        return error_reply(400, "Please ensure that the conversation ends with a user turn.")
    return answers.parts_text(last.get("parts"))


def generate(
    settings: SimSettings, body: dict[str, Any], model: str, stream: Stream = None
) -> Reply:
    """A ``GenerateContentResponse`` with the deterministic answer, or one function call
    (``tools: call``); ``stream``: its chunks as events (``"sse"``) or as a JSON array
    (``"array"``, ``streamGenerateContent`` without ``alt=sse``)."""
    problem = validation_problem(body)
    if problem is not None:
        return error_reply(400, problem)
    prefilled = _prefill(settings, body["contents"])
    if isinstance(prefilled, Reply):
        return prefilled
    rid = gw.new_id()
    prompt_tokens = answers.prompt_tokens_of(body)
    call = tools.gemini_call(body) if settings.tools == "call" else None
    if call is not None:
        use = gw.usage(prompt_tokens, call.output_tokens())
        answer = gw.response(rid, model, [gw.call_part(call)], "STOP", use)
        return _chunks([answer], stream) if stream else _json(answer)
    voice = settings.voice or settings.name
    words = answers.answer_words(voice, model, answers.prompt_of(body), settings.n_words)
    if prefilled is not None:
        words = answers.continuation(words, prefilled)
    config = body.get("generationConfig") or body.get("generation_config")
    if isinstance(config, Mapping):  # Gemini stops there and says STOP, as for the end
        words, _ = answers.stop_at(words, config.get("stopSequences", config.get("stop_sequences")))
    text = "".join(words)
    output_tokens = answers.count_tokens(text)
    if stream:
        return _chunks(gw.text_chunks(rid, model, words, prompt_tokens, output_tokens), stream)
    use = gw.usage(prompt_tokens, output_tokens)
    return _json(gw.response(rid, model, [{"text": text}], "STOP", use))


def list_models(settings: SimSettings, body: dict[str, Any]) -> Reply:
    return _json(gw.models(settings.models))


def _json(obj: Any) -> Reply:
    return Reply(200, orjson.dumps(obj))


def _chunks(chunks: list[dict[str, Any]], stream: Stream) -> Reply:
    if stream == "array":
        return _json(chunks)
    return Reply(200, events=[gw.sse(chunk) for chunk in chunks])
