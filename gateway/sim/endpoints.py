"""What each OpenAI endpoint of the sim answers, before any fault shapes the delivery.

Each endpoint is a pure function of the settings and the parsed request body that returns a
:class:`Reply`: a JSON body (any status) or, for a streamed answer, the list of SSE events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.sim import answers, tools, wire
from gateway.sim.state import SimSettings


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    events: list[bytes] | None = None  # a stream: its events without the terminator


Endpoint = Callable[[SimSettings, dict[str, Any]], Reply]

MAX_DIMENSIONS = 4096  # above OpenAI's largest (3072); a huge value would exhaust memory


def error_reply(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> Reply:
    return Reply(status, orjson.dumps(wire.error_body(status, message, code=code, param=param)))


def _json(obj: Any) -> Reply:
    return Reply(200, orjson.dumps(obj))


def _stream(chunks: list[dict[str, Any]]) -> Reply:
    return Reply(200, events=[wire.sse(chunk) for chunk in chunks])


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _model(body: dict[str, Any]) -> str | Reply:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error_reply(400, "you must provide a model parameter", param="model")
    return model


def _generate(
    settings: SimSettings,
    body: dict[str, Any],
    model: str,
    *,
    chat: bool,
    prefilled: str | None = None,
) -> Reply:
    voice = settings.voice or settings.name
    words = answers.answer_words(voice, model, answers.prompt_of(body), settings.n_words)
    if prefilled is not None:
        words = answers.continuation(words, prefilled)
    if chat:
        words, _ = answers.stop_at(words, body.get("stop"))
    text = "".join(words)
    use = wire.usage(answers.prompt_tokens_of(body), answers.count_tokens(text))
    created = int(time.time())
    cid = wire.new_id("chatcmpl" if chat else "cmpl")
    if body.get("stream") is True:
        stream_use = use if _include_usage(body) else None
        build = wire.chat_chunks if chat else wire.text_chunks
        return _stream(build(cid, created, model, words, stream_use))
    whole = wire.chat_completion if chat else wire.text_completion
    return _json(whole(cid, created, model, text, use))


def chat_completions(settings: SimSettings, body: dict[str, Any]) -> Reply:
    model = _model(body)
    if isinstance(model, Reply):
        return model
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_reply(400, "'messages' must be a non-empty array", param="messages")
    last = messages[-1]
    prefilled = None
    if isinstance(last, dict) and last.get("role") == "assistant" and settings.prefill != "ignore":
        if settings.prefill == "reject":
            return error_reply(
                400,
                "This model does not support assistant prefill: the last message must be a "
                "user or tool message.",
                param="messages",
            )
        prefilled = answers.content_text(last.get("content"))
    call = tools.openai_call(body) if settings.tools == "call" else None
    if call is not None:
        return _tool_call(body, model, call)
    return _generate(settings, body, model, chat=True, prefilled=prefilled)


def _tool_call(body: dict[str, Any], model: str, call: tools.ToolCall) -> Reply:
    use = wire.usage(answers.prompt_tokens_of(body), call.output_tokens())
    created = int(time.time())
    cid = wire.new_id("chatcmpl")
    if body.get("stream") is True:
        stream_use = use if _include_usage(body) else None
        return _stream(wire.tool_call_chunks(cid, created, model, call, stream_use))
    return _json(wire.tool_call_completion(cid, created, model, call, use))


def completions(settings: SimSettings, body: dict[str, Any]) -> Reply:
    model = _model(body)
    if isinstance(model, Reply):
        return model
    if "prompt" not in body:
        return error_reply(400, "you must provide a prompt parameter", param="prompt")
    return _generate(settings, body, model, chat=False)


def embeddings(settings: SimSettings, body: dict[str, Any]) -> Reply:
    model = _model(body)
    if isinstance(model, Reply):
        return model
    try:
        texts = answers.embedding_inputs(body.get("input"))
    except ValueError as exc:
        return error_reply(400, str(exc), param="input")
    dims = body.get("dimensions", settings.embedding_dims)
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_DIMENSIONS:
        return error_reply(
            400, f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}", param="dimensions"
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return error_reply(
            400, "'encoding_format' must be float or base64", param="encoding_format"
        )
    vectors = [answers.embedding_vector(text, dims) for text in texts]
    tokens = sum(answers.count_tokens(text) for text in texts)
    if encoding == "base64":
        return _json(wire.embeddings(model, [answers.embedding_base64(v) for v in vectors], tokens))
    return _json(wire.embeddings(model, vectors, tokens))


def list_models(settings: SimSettings, body: dict[str, Any]) -> Reply:
    return _json(wire.models(settings.models, settings.name))
