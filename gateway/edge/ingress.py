"""The ingresses: which wire format a client speaks (by the path it calls), and what each
checks of a request beyond `gateway.edge.accept`.

    openai     /v1/chat/completions, /v1/completions, /v1/embeddings (and every other path)
    anthropic  /v1/messages (the Messages API: errors in its shape, streams in its events)
"""

from __future__ import annotations

from typing import Any

from gateway.edge.errors import InvalidRequest

OPENAI, ANTHROPIC = "openai", "anthropic"
MESSAGES = "/v1/messages"
BY_PATH = {MESSAGES: ANTHROPIC}  # the proxied paths that are not OpenAI's


def of(path: str) -> str:
    """The format a caller of `path` reads errors in (`/v1/messages/...` too: Anthropic's)."""
    if path.startswith(MESSAGES) and (len(path) == len(MESSAGES) or path[len(MESSAGES)] == "/"):
        return ANTHROPIC
    return OPENAI


def check(payload: dict[str, Any], ingress: str) -> None:
    """What the Messages API requires that OpenAI's does not: a positive `max_tokens`, and
    `messages` as a list (400s, whichever target would have served the request)."""
    if ingress != ANTHROPIC:
        return
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be a positive integer", param="max_tokens")
    if not isinstance(payload.get("messages"), list):
        raise InvalidRequest("messages: Input should be a valid list", param="messages")
