"""Google's Generative Language API (Gemini), as the provider's side of a translation: a
chat-model request encoded for `POST {base_url}/models/{model}:generateContent` (or
`:streamGenerateContent?alt=sse`). Answers, stream chunks and errors: `gemini_response`.

Shapes follow the `google-genai` SDK's types (`google.genai.types`: `Content`, `Part`, `Tool`,
`ToolConfig`, `GenerationConfig`), in the REST API's camelCase. The model and streaming are in
the URL, not the body; the key goes in the `x-goog-api-key` header (`gateway.edge.headers`),
never in the URL.

Tool calls: a `functionCall` is sent with its `id` (whoever made it: an id Gemini gave, one
`gemini_response` derived for an answer that had none, another vendor's), and a tool result
becomes a `functionResponse` with the same `id` and the *name* Gemini needs, looked up from the
call of that id earlier in the conversation. A call Gemini signed (`thoughtSignature`) goes
back with its signature: an OpenAI client carries it in the call's
`extra_content.google.thought_signature`, as Google's own OpenAI-compatible endpoint does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from gateway.formats import chat

# Of what `chat.uncarried` checks, what `generationConfig` carries (`n`: only unstreamed).
_CARRIED = frozenset({"seed", "n", "presence_penalty", "frequency_penalty", "response_format"})
_INT32 = range(-(2**31), 2**31)
_ROLES = {"user": "user", "assistant": "model"}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


def path(model: str, stream: bool) -> str:
    """The endpoint under `base_url` (`.../v1beta`) for `model`: a bare name (`gemini-2.5-flash`)
    or a resource name (`models/...`, `tunedModels/...`)."""
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    name = quote(name, safe="/")
    return f"/{name}:streamGenerateContent?alt=sse" if stream else f"/{name}:generateContent"


def _args(use: chat.ToolUse, dropped: set[str]) -> dict[str, Any]:
    try:
        args = orjson.loads(use.arguments or "{}")
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        dropped.add("tool_calls.arguments")  # not a JSON object: Gemini takes no other
        return {}
    return args


def _result(part: chat.ToolResult, names: dict[str, str], dropped: set[str]) -> dict[str, Any]:
    text = "".join(p.text for p in part.content if isinstance(p, chat.Text))
    if any(isinstance(p, chat.Image) for p in part.content):
        dropped.add("tool.content.image_url")
    name = names.get(part.tool_use_id)
    if name is None:  # a result of no call in this conversation: Gemini would refuse it
        dropped.add("messages.tool_call_id")
        return {"text": text}
    response = {"error" if part.is_error else "output": text}  # the keys Gemini's docs name
    return {"functionResponse": {"id": part.tool_use_id, "name": name, "response": response}}


def _part(part: chat.Part, names: dict[str, str], dropped: set[str]) -> dict[str, Any] | None:
    if isinstance(part, chat.Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, chat.Image):
        if part.data:
            return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
        dropped.add("content.image_url")  # a URL: Gemini takes inline data or its own files
        return None
    if isinstance(part, chat.ToolUse):
        call = {"id": part.id, "name": part.name, "args": _args(part, dropped)}
        if part.signature:  # Gemini's own, back with its call (Gemini 3 refuses a call without)
            return {"functionCall": call, "thoughtSignature": part.signature}
        return {"functionCall": call}
    if isinstance(part, chat.ToolResult):
        return _result(part, names, dropped)
    if part.vendor == "gemini" and part.signature:
        return {"text": part.text, "thought": True, "thoughtSignature": part.signature}
    dropped.add("thinking")  # another vendor's reasoning: never sent with a foreign signature
    return None


def _contents(req: chat.ChatRequest, dropped: set[str]) -> list[dict[str, Any]]:
    names = {p.id: p.name for m in req.messages for p in m.parts if isinstance(p, chat.ToolUse)}
    out: list[dict[str, Any]] = []
    for m in req.messages:
        parts = [p for p in (_part(x, names, dropped) for x in m.parts) if p is not None]
        if not parts:
            continue
        role = _ROLES[m.role]
        if out and out[-1]["role"] == role:  # one turn per role in a row: a call's results
            out[-1]["parts"].extend(parts)  # all answer it together, as Gemini wants
        else:
            out.append({"role": role, "parts": parts})
    return out


def _tool_config(choice: chat.ToolChoice, dropped: set[str]) -> dict[str, Any]:
    calling: dict[str, Any] = {"mode": _MODES[choice.mode]}
    if choice.mode == "tool":
        calling["allowedFunctionNames"] = [choice.name]
    if not choice.parallel and choice.mode != "none":
        dropped.add("parallel_tool_calls")  # Gemini has no way to ask for one call at a time
    return {"functionCallingConfig": calling}


def _generation(req: chat.ChatRequest, dropped: set[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if req.temperature is not None:
        config["temperature"] = req.temperature
    if req.top_p is not None:
        config["topP"] = req.top_p
    if req.max_tokens is not None:
        config["maxOutputTokens"] = req.max_tokens
    if req.stop:
        config["stopSequences"] = list(req.stop)
    if req.n > 1:
        if req.stream:  # a stream carries one answer here (the client's chunks name no other)
            dropped.add("n")
        else:
            config["candidateCount"] = req.n
    if req.seed is not None:
        if req.seed in _INT32:
            config["seed"] = req.seed
        else:
            dropped.add("seed")  # Gemini's is an int32
    if req.presence_penalty is not None:
        config["presencePenalty"] = req.presence_penalty
    if req.frequency_penalty is not None:
        config["frequencyPenalty"] = req.frequency_penalty
    fmt = req.response_format
    if fmt is not None:
        config["responseMimeType"] = "application/json"
        if fmt.schema is not None:
            config["responseJsonSchema"] = fmt.schema
    return config


def encode_request(req: chat.ChatRequest, model: str) -> tuple[dict[str, Any], frozenset[str]]:
    """The body for `generateContent` (the model and streaming are in the path: `path`), and
    what of the request it could not carry."""
    dropped = set(req.dropped) | chat.uncarried(req, _CARRIED)
    body: dict[str, Any] = {"contents": _contents(req, dropped)}
    system = [{"text": t.text} for t in req.system if t.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    if req.tools:
        declarations = []
        for t in req.tools:
            fn: dict[str, Any] = {"name": t.name}
            if t.description:
                fn["description"] = t.description
            fn["parametersJsonSchema"] = t.schema  # JSON Schema as sent, not the OpenAPI subset
            declarations.append(fn)
            if t.strict:
                dropped.add("tools.strict")  # Gemini has no strict mode
        body["tools"] = [{"functionDeclarations": declarations}]
    if req.tool_choice is not None and (req.tools or req.tool_choice.mode == "none"):
        body["toolConfig"] = _tool_config(req.tool_choice, dropped)
    config = _generation(req, dropped)
    if config:
        body["generationConfig"] = config
    if req.user:
        dropped.add("user")  # the Generative Language API takes no end-user id
    return body, frozenset(dropped)
