"""The ingresses: which wire format a client speaks (by the path it calls), and what each
checks of a request beyond `gateway.edge.accept`.

    openai     /v1/chat/completions, /v1/completions, /v1/embeddings (and every other path)
    anthropic  /v1/messages (the Messages API: errors in its shape, streams in its events)
    responses  /v1/responses (the Responses API, stateless: errors in OpenAI's shape, streams
               in its events)
"""

from __future__ import annotations

from typing import Any

from gateway.edge.errors import InvalidRequest
from gateway.formats.responses_ingress import STATEFUL

OPENAI, ANTHROPIC, RESPONSES = "openai", "anthropic", "responses"
MESSAGES = "/v1/messages"
RESPONSES_PATH = "/v1/responses"
BY_PATH = {MESSAGES: ANTHROPIC, RESPONSES_PATH: RESPONSES}  # the proxied paths not OpenAI's
REQUIRED = {RESPONSES: "input"}  # the field a chat request must have, where not `messages`
_STATELESS = (
    "Turnout is stateless: it stores no responses or conversations, so it cannot continue "
    "one. Send the whole conversation in `input` instead."
)


def of(path: str) -> str:
    """The format a caller of `path` reads errors in (`/v1/messages/...` too: Anthropic's)."""
    if path.startswith(MESSAGES) and (len(path) == len(MESSAGES) or path[len(MESSAGES)] == "/"):
        return ANTHROPIC
    return OPENAI


def check(payload: dict[str, Any], ingress: str) -> None:
    """What a format requires beyond `gateway.edge.accept` (400s, whichever target would
    have served the request): the Messages API a positive `max_tokens` and `messages` as a
    list; the Responses API `input` as a string or a list, and nothing that needs a stored
    response (`_responses`)."""
    if ingress == RESPONSES:
        _responses(payload)
        return
    if ingress != ANTHROPIC:
        return
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be a positive integer", param="max_tokens")
    if not isinstance(payload.get("messages"), list):
        raise InvalidRequest("messages: Input should be a valid list", param="messages")


def _responses(payload: dict[str, Any]) -> None:
    for key in STATEFUL:
        if payload.get(key) is not None:
            raise InvalidRequest(f"{key}: {_STATELESS}", param=key, code="unsupported_parameter")
    if payload.get("background") is True:
        message = "background: Turnout is stateless: a response cannot be run in the background."
        raise InvalidRequest(message, param="background", code="unsupported_parameter")
    raw = payload.get("input")
    if not isinstance(raw, str | list):
        raise InvalidRequest(
            "input: Input should be a string or a list of items", param="input", code="invalid_type"
        )
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            raise InvalidRequest(
                f"input[{i}]: an item_reference names a stored item. {_STATELESS}",
                param=f"input[{i}]",
                code="unsupported_parameter",
            )
