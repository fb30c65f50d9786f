"""Gemini's answers, stream chunks and errors, decoded into the chat model (the request side:
`gemini_generate`).

Shapes follow the `google-genai` SDK's `GenerateContentResponse` (REST camelCase). A stream
(`alt=sse`) is one `data:` event per chunk, each a whole `GenerateContentResponse`, with no
terminator: the chunk with a `finishReason` ends the answer (and its `usageMetadata` is the
answer's). An error in a stream is a chunk `{"error": {...}}`.

Tool-call ids: Gemini's `functionCall` has an optional `id` (newer models set it); when it has
none, the id is derived from the answer's `responseId`, the call's position among its calls and
the call itself (`tool_id`), the same in a stream and in a whole answer.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import orjson

from gateway.formats import chat

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "MODEL_ARMOR")
_FINISH: dict[str, chat.Finish] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **{r: "content_filter" for r in _FILTERED},
    **{f"IMAGE_{r}": "content_filter" for r in ("SAFETY", "PROHIBITED_CONTENT", "RECITATION")},
}  # the rest (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL, ...): "stop"
_KINDS = {  # google.rpc.Code names, as the model's kinds of error (`chat.ERROR_KINDS`)
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error",
    "UNAVAILABLE": "overloaded_error",  # "The model is overloaded. Please try again later."
    "INTERNAL": "api_error",
    "DEADLINE_EXCEEDED": "api_error",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?)s\s*")


def tool_id(response_id: str, index: int, name: str, args: str) -> str:
    """The id of a call Gemini gave none: the same for the same answer, another for another."""
    seed = f"{response_id}\x00{index}\x00{name}\x00{args}".encode()
    return "call_" + hashlib.sha256(seed).hexdigest()[:24]


def _n(raw: dict[str, Any], key: str) -> int:
    v = raw.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _usage(raw: Any) -> chat.Usage | None:
    if not isinstance(raw, dict):
        return None
    return chat.Usage(  # the prompt's count includes its cached part; thoughts are output
        _n(raw, "promptTokenCount") + _n(raw, "toolUsePromptTokenCount"),
        _n(raw, "candidatesTokenCount") + _n(raw, "thoughtsTokenCount"),
        _n(raw, "cachedContentTokenCount"),
    )


def _finish(raw: Any, calls: bool) -> chat.Finish | None:
    if not isinstance(raw, str):
        return None
    finish = _FINISH.get(raw, "stop")
    return "tool_calls" if finish == "stop" and calls else finish  # Gemini says STOP for calls


def _blocked(obj: dict[str, Any]) -> bool:
    """The prompt itself was blocked (no candidates): a content filter."""
    feedback = obj.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _call(raw: dict[str, Any], response_id: str, index: int, signature: Any) -> chat.ToolUse:
    name = str(raw.get("name") or "")
    args = orjson.dumps(raw.get("args") or {}).decode()
    given = raw.get("id")
    call_id = given if isinstance(given, str) and given else tool_id(response_id, index, name, args)
    return chat.ToolUse(call_id, name, args, signature if isinstance(signature, str) else "")


class _Parts:
    """A candidate's parts in the model's terms; calls numbered across calls to `read`."""

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
        self.calls = 0
        self.dropped: set[str] = set()

    def read(self, content: Any) -> list[chat.Part]:
        parts = content.get("parts") if isinstance(content, dict) else None
        out: list[chat.Part] = []
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            text, signature = part.get("text"), part.get("thoughtSignature")
            if isinstance(part.get("functionCall"), dict):  # its signature goes with the call
                out.append(_call(part["functionCall"], self.response_id, self.calls, signature))
                self.calls += 1
                continue
            elif isinstance(text, str) and part.get("thought") is True:
                out.append(chat.Thinking(text, str(signature or ""), "gemini"))
            elif isinstance(text, str):
                out.append(chat.Text(text))
            else:
                self.dropped.update(f"content.{k}" for k in part if k != "thoughtSignature")
            if signature and part.get("thought") is not True:
                self.dropped.add("thoughtSignature")  # the client's format has no place for it
        return out


def _ids(obj: dict[str, Any]) -> tuple[str, str]:
    """(the answer's id, the id tool calls are derived from: Gemini's, or none)."""
    rid = obj.get("responseId")
    rid = rid if isinstance(rid, str) else ""
    return rid or f"chatcmpl-{uuid.uuid4().hex[:24]}", rid


def decode_reply(obj: Any) -> chat.ChatReply | None:
    """A `GenerateContentResponse`; None for anything else (an error among them)."""
    if not isinstance(obj, dict) or "error" in obj:
        return None
    candidates = obj.get("candidates")
    if not isinstance(candidates, list) and not _blocked(obj):
        return None
    answer_id, rid = _ids(obj)
    model = obj.get("modelVersion")
    usage = _usage(obj.get("usageMetadata"))
    ranked = sorted(
        (c for c in candidates or () if isinstance(c, dict)),
        key=lambda c: _n(c, "index"),
    )
    if not ranked:  # the prompt was blocked: no answer, by a content filter
        return chat.ChatReply(answer_id, str(model or ""), (), "content_filter", usage)
    reader = _Parts(rid)
    choices: list[chat.Choice] = []
    for candidate in ranked:
        reader.calls = 0
        parts = tuple(reader.read(candidate.get("content")))
        calls = any(isinstance(p, chat.ToolUse) for p in parts)
        choices.append(chat.Choice(parts, _finish(candidate.get("finishReason"), calls)))
    first = choices[0]
    return chat.ChatReply(
        answer_id,
        str(model or ""),
        first.parts,
        first.finish,
        usage,
        frozenset(reader.dropped),
        tuple(choices[1:]),
    )


def _error(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, list) and len(obj) == 1:  # a stream without alt=sse: a JSON array
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    return err if isinstance(err, dict) else None


def _details(err: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    details = err.get("details")
    items = details if isinstance(details, list) else ()
    return [d for d in items if isinstance(d, dict) and d.get("@type") == kind]


def _key_invalid(err: dict[str, Any]) -> bool:
    return any(d.get("reason") == "API_KEY_INVALID" for d in _details(err, _ERROR_INFO))


def error_of(body: bytes) -> tuple[str, str]:
    """(kind, message) of a Gemini error body `{"error": {"code", "message", "status"}}`;
    ("", "") when it is not one."""
    try:
        err = _error(orjson.loads(body))
    except orjson.JSONDecodeError:
        return "", ""
    if err is None:
        return "", ""
    kind = "authentication_error" if _key_invalid(err) else _KINDS.get(str(err.get("status")), "")
    return kind, str(err.get("message") or "")


def evidence(status: int, retry_after: str | None, body: bytes) -> tuple[int, str | None]:
    """What an error response says in HTTP's terms, for `health.outcome.classify_status`: a
    bad key is Gemini's 400 `API_KEY_INVALID` (401 here), a region or billing it will not serve
    is its 400 `FAILED_PRECONDITION` (403), and a 429 says when to retry in the body
    (`RetryInfo.retryDelay`, "37s"), not in `Retry-After`."""
    try:
        err = _error(orjson.loads(body))
    except orjson.JSONDecodeError:
        return status, retry_after
    if err is None:
        return status, retry_after
    if status == 400 and _key_invalid(err):
        status = 401
    elif status == 400 and err.get("status") == "FAILED_PRECONDITION":
        status = 403
    if retry_after is None:
        for info in _details(err, _RETRY_INFO):
            delay = _DURATION.fullmatch(str(info.get("retryDelay") or ""))
            if delay is not None:
                retry_after = delay.group(1)
    return status, retry_after


class StreamDecoder:
    """Gemini stream chunks (their `data` JSON) as stream events in the model's terms."""

    def __init__(self) -> None:
        self._reader: _Parts | None = None  # from the first chunk on
        self._usage: Any = None  # the latest chunk's usageMetadata, read when it is needed

    def decode(self, data: bytes) -> list[chat.Event]:
        obj = chat.json_object(data)
        if obj is None:
            return [chat.Unreadable()]
        if "error" in obj:
            err = _error(obj) or {}
            kind = _KINDS.get(str(err.get("status")), "api_error")
            return [chat.Failed(kind, str(err.get("message") or ""))]
        self._usage = obj.get("usageMetadata") or self._usage
        out: list[chat.Event] = []
        reader = self._reader
        if reader is None:
            answer_id, rid = _ids(obj)
            reader = self._reader = _Parts(rid)
            model = str(obj.get("modelVersion") or "")
            out.append(chat.Started(answer_id, model, _usage(self._usage)))
        candidates = obj.get("candidates")
        first = candidates[0] if isinstance(candidates, list) and candidates else None
        if not isinstance(first, dict):
            if _blocked(obj):
                out += self._end("content_filter")
            return out
        content = first.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str) and len(part) == 1:  # the usual chunk: text alone
                out.append(chat.TextDelta(text))
                continue
            index = reader.calls  # a call comes whole, in one part
            for read in reader.read({"parts": [part]}):
                if isinstance(read, chat.Text):
                    out.append(chat.TextDelta(read.text))
                elif isinstance(read, chat.ToolUse):
                    out.append(chat.ToolStarted(index, read.id, read.name, read.signature))
                    out.append(chat.ToolArguments(index, read.arguments))
                # thoughts: reasoning has no place in the client's chunks (as for Anthropic's)
        finish = _finish(first.get("finishReason"), reader.calls > 0)
        if finish is not None:  # the last chunk: nothing follows it (no terminator)
            out += self._end(finish)
        return out

    def _end(self, finish: chat.Finish) -> list[chat.Event]:
        usage = _usage(self._usage)
        return [chat.Finished(finish, usage), chat.Ended(usage)]
