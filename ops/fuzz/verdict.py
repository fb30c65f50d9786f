"""Classifying one answer: which findings it holds, and the labels it is counted under.

Defects (any one fails the run): a 5xx of the gateway's own making; an error (status >= 400,
or bytes that are not HTTP at all) whose body is not OpenAI's {"error": {"message", "type"}}
(Anthropic's {"type": "error", "error": {"type", "message"}} on the Messages ingress,
/v1/messages and below); a hang. Informational: 5xx that name an upstream cause, valid requests that did not succeed,
dropped connections, cases the fuzzer could not send, our credential echoed back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .types import (
    CLIENT_ERROR,
    CLOSED,
    HANG,
    MALFORMED,
    OK,
    SECRET_PREFIX,
    Answer,
    Case,
    Reply,
)

DEFECTS = ("gateway_5xx", "non_openai_error", "hang")
INFO = ("upstream_5xx", "shed", "valid_not_ok", "dropped", "client_error", "secret_echoed")

# Errors that say an upstream (or the caller's own deadline) is why the answer is a 5xx:
# AllCandidatesFailed 502, NoCandidateAvailable 503, GatewayTimeout 504 — each one carries
# x-turnout-attempts. Anything else at 5xx (500 internal_error, a bare aiohttp 500, a 503
# shutting_down mid-run) is the gateway's own.
UPSTREAM_CODES = frozenset(
    {"all_candidates_failed", "no_candidate_available", "deadline_exceeded", "upstream_timeout"}
)
# Deliberate load shedding, with Retry-After: too many body bytes or connections in flight
# (server.max_body_bytes_in_flight, server.max_connections). Reported, not a defect.
SHED_CODES = frozenset({"overloaded", "too_many_connections"})


@dataclass(frozen=True, slots=True)
class Finding:
    category: str
    status: str  # the reply's status, or the answer's outcome when there was none
    detail: str  # short: the error code, content type, first bytes

    def signature(self, kind: str) -> str:
        return f"{kind} -> {self.status} {self.detail.split(' | ')[0]}"


def openai_error(body: bytes) -> dict[str, object] | None:
    """The `error` object when the body is OpenAI's error shape, else None."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if not isinstance(err, dict):
        return None
    if not isinstance(err.get("message"), str) or not isinstance(err.get("type"), str):
        return None
    return err


def anthropic_error(body: bytes) -> dict[str, object] | None:
    """The `error` object when the body is Anthropic's error shape, else None."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("type") != "error":
        return None
    err = data.get("error")
    if not isinstance(err, dict):
        return None
    if not isinstance(err.get("message"), str) or not isinstance(err.get("type"), str):
        return None
    return err


# Methods the HTTP parser knows: with any other the request line is refused before its path
# is read, so the answer is the HTTP layer's (OpenAI's shape), whatever the path.
PARSED_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"}
)


def messages_ingress(case: Case) -> bool:
    """The case calls the Anthropic ingress (as the gateway sees its path: decoded)."""
    if case.http is None or case.http.method not in PARSED_METHODS:
        return False
    path = unquote(urlsplit(case.http.path).path)
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def _error_of(case: Case, body: bytes) -> dict[str, object] | None:
    return anthropic_error(body) if messages_ingress(case) else openai_error(body)


def _head(reply: Reply) -> str:
    ctype = reply.headers.get("content-type", "-").split(";")[0]
    return f"{ctype} {reply.body[:70]!r}"


def status_labels(answer: Answer) -> list[str]:
    """Each reply's status, and how the exchange ended when that was not as awaited."""
    labels = [str(r.status) for r in answer.replies]
    return labels if answer.outcome == OK else [*labels, answer.outcome]


def _is_head(case: Case) -> bool:
    return case.http is not None and case.http.method == "HEAD"


def _reply_findings(case: Case, reply: Reply) -> list[Finding]:
    out: list[Finding] = []
    status = str(reply.status)
    err = _error_of(case, reply.body) if reply.status >= 400 else None
    if reply.status >= 400 and err is None and not _is_head(case):
        out.append(Finding("non_openai_error", status, _head(reply)))
    if reply.status >= 500:
        code = err.get("code") if err else None
        if err is not None and messages_ingress(case):  # Anthropic's errors have no code:
            attempted = "x-turnout-attempts" in reply.headers  # a failover's carry the count
            code = "all_candidates_failed" if attempted else err.get("type")
        upstream = code in UPSTREAM_CODES and "x-turnout-attempts" in reply.headers
        shed = code in SHED_CODES and "retry-after" in {k.lower() for k in reply.headers}
        category = "upstream_5xx" if upstream else "shed" if shed else "gateway_5xx"
        label = str(code) if err else reply.headers.get("content-type", "-").split(";")[0]
        out.append(Finding(category, status, f"{label} | {_head(reply)}"))
    if SECRET_PREFIX.encode() in reply.body:
        out.append(Finding("secret_echoed", status, _head(reply)))
    return out


def _valid_ok(case: Case, answer: Answer) -> str | None:
    """None when a valid request got a complete success, else why not."""
    if answer.outcome != OK or not answer.replies:
        return f"{answer.outcome} {answer.detail[:80]}"
    reply = answer.replies[0]
    if reply.status != 200:
        err = _error_of(case, reply.body)
        return f"{err.get('code', err.get('type')) if err else '-'} | {_head(reply)}"
    anthropic = messages_ingress(case)
    responses = case.http is not None and case.http.path == "/v1/responses"
    if case.http is not None and case.http.stream:
        end = b"event: message_stop" if anthropic else b"data: [DONE]"
        if responses:  # its last event: completed, or incomplete at max_output_tokens
            done = b"event: response.completed" in reply.body
            done = done or b"event: response.incomplete" in reply.body
            return None if done else f"stream without its end | {_head(reply)}"
        return None if end in reply.body else f"stream without its end | {_head(reply)}"
    try:
        data = json.loads(reply.body)
    except ValueError:
        return f"200 not JSON | {_head(reply)}"
    if anthropic:
        ok = isinstance(data, dict) and data.get("type") == "message"
        return None if ok else f"200 not a message | {_head(reply)}"
    if responses:
        ok = isinstance(data, dict) and data.get("object") == "response"
        return None if ok else f"200 not a response | {_head(reply)}"
    if not isinstance(data, dict) or not ("choices" in data or "data" in data):
        return f"200 not a completion | {_head(reply)}"
    return None


def findings(case: Case, answer: Answer) -> list[Finding]:
    out: list[Finding] = []
    for reply in answer.replies:
        out.extend(_reply_findings(case, reply))
    if answer.outcome == HANG:
        out.append(Finding("hang", HANG, answer.detail))
    elif answer.outcome == MALFORMED:
        out.append(Finding("non_openai_error", MALFORMED, answer.detail[:120]))
    elif answer.outcome == CLOSED and case.http is not None:
        out.append(Finding("dropped", CLOSED, answer.detail[:120]))
    elif answer.outcome == CLIENT_ERROR:
        out.append(Finding("client_error", CLIENT_ERROR, answer.detail[:120]))
    if case.category == "valid":
        why = _valid_ok(case, answer)
        if why is not None:
            label = str(answer.replies[0].status) if answer.replies else answer.outcome
            out.append(Finding("valid_not_ok", label, why))
    return out
