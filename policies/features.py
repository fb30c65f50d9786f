"""Request features, extracted once per request from the parsed body. Cheap: no tokenizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.types import RequestFeatures

CHARS_PER_TOKEN = 4


def _text_chars(content: Any) -> tuple[int, bool]:
    """Characters of text in a message's content, and whether it holds an image."""
    if isinstance(content, str):
        return len(content), False
    chars, image = 0, False
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    chars += len(text)
                if part.get("type") in ("image_url", "input_image"):
                    image = True
    return chars, image


def extract(operation: str, body: Mapping[str, Any], body_bytes: int) -> RequestFeatures:
    chars, images = 0, False
    if operation == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            for m in messages:
                if isinstance(m, Mapping):
                    c, img = _text_chars(m.get("content"))
                    chars += c
                    images = images or img
    elif operation == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            chars = len(prompt)
        elif isinstance(prompt, list):
            chars = sum(len(p) for p in prompt if isinstance(p, str))
    else:
        chars = body_bytes
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    fmt = body.get("response_format")
    json_output = isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")
    return RequestFeatures(
        operation=operation,
        estimated_input_tokens=chars // CHARS_PER_TOKEN + 1,
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
        stream=body.get("stream") is True,
        tools=bool(body.get("tools") or body.get("functions")),
        images=images,
        json_output=json_output,
    )
