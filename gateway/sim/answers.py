"""Deterministic content for the simulated provider.

Everything here is pure: the same (name, model, prompt) always yields the same answer, so a test
can compute the expected text without talking to the sim. The streamed chunks joined together
equal the non-streamed text exactly, and every complete answer ends with a "." chunk so that a
truncated answer can never equal a complete one.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

VOCABULARY: tuple[str, ...] = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu", "amber", "basil", "cedar", "dune", "ember", "fern",
    "granite", "harbor", "iris", "jade", "kelp", "lumen", "maple", "nectar",
    "onyx", "pearl", "quartz", "river", "sage", "timber", "umber", "velvet",
    "willow", "yarrow", "zephyr", "anchor", "beacon", "canyon", "drift", "ferry",
    "glacier", "horizon", "island", "junction", "lantern", "meadow", "signal", "switch",
)  # fmt: skip


def _digest_stream(*parts: str) -> Iterator[int]:
    """Yield an endless deterministic byte stream derived from ``parts``."""
    seed = "\x00".join(parts).encode()
    counter = 0
    while True:
        yield from hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1


def answer_words(name: str, model: str, prompt: str, n_words: int) -> list[str]:
    """The answer as stream chunks: ``"[name]"``, then ``n_words`` words (each with a leading
    space) picked by a hash of (model, prompt), then a final ``"."``."""
    stream = _digest_stream(model, prompt)
    words = [" " + VOCABULARY[next(stream) % len(VOCABULARY)] for _ in range(max(0, n_words))]
    return [f"[{name}]", *words, "."]


def stop_at(words: list[str], stops: Any) -> tuple[list[str], str | None]:
    """The answer up to the first of the stop sequences (`stop`: a string or a list) it
    contains, that sequence excluded, and which one it was (None: it contains none)."""
    if isinstance(stops, str):
        stops = [stops]
    seqs = [s for s in stops if isinstance(s, str) and s] if isinstance(stops, list) else []
    text = "".join(words)
    hits = [(text.find(s), s) for s in seqs if s in text]
    if not hits:
        return words, None
    at, seq = min(hits)
    out: list[str] = []
    seen = 0
    for word in words:
        if seen + len(word) > at:
            if at > seen:
                out.append(word[: at - seen])
            break
        out.append(word)
        seen += len(word)
    return out, seq


def answer_text(name: str, model: str, prompt: str, n_words: int) -> str:
    """The complete answer: exactly ``"".join(answer_words(...))``."""
    return "".join(answer_words(name, model, prompt, n_words))


def continuation(words: list[str], prefilled: str) -> list[str]:
    """The chunks that continue `prefilled` into the answer `words`: the rest of the answer
    when `prefilled` is a prefix of it (a word it cut in two is finished first), else the whole
    answer (a model would not know how to go on from text it did not write)."""
    text = "".join(words)
    if not text.startswith(prefilled):
        return words
    out: list[str] = []
    at = 0
    for word in words:
        end = at + len(word)
        if end > len(prefilled):
            out.append(word[max(0, len(prefilled) - at) :])
        at = end
    return out


def count_tokens(text: str) -> int:
    """The sim's token count: whitespace-separated words."""
    return len(text.split())


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of content parts (OpenAI's or
    Anthropic's). The text parts count; a list with none, such as an Anthropic user turn of
    ``tool_result`` blocks, reads as the text of its tool results."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part for part in content if isinstance(part, Mapping)]
        texts = [
            str(part.get("text", ""))
            for part in parts
            if part.get("type") in ("text", "input_text")
        ]
        if not texts:
            texts = [
                content_text(part.get("content"))
                for part in parts
                if part.get("type") == "tool_result"
            ]
        return "\n".join(texts)
    return ""


def _result_text(response: Any) -> str:
    """A Gemini ``functionResponse.response``: its ``output`` (or ``error``) text, else its
    JSON."""
    if isinstance(response, Mapping):
        for key in ("output", "error"):
            if isinstance(response.get(key), str):
                return str(response[key])
    return orjson.dumps(response).decode()


def parts_text(parts: Any) -> str:
    """Text of a Gemini content's ``parts``: the text parts (not thoughts) or, with none, as a
    user turn of function results reads, the text of its ``functionResponse``s."""
    items = [p for p in parts if isinstance(p, Mapping)] if isinstance(parts, list) else []
    texts = [
        str(p["text"]) for p in items if isinstance(p.get("text"), str) and not p.get("thought")
    ]
    if not texts:
        texts = [
            _result_text(p["functionResponse"].get("response"))
            for p in items
            if isinstance(p.get("functionResponse"), Mapping)
        ]
    return "\n".join(texts)


def _gemini_prompt(contents: list[Any]) -> str:
    for content in reversed(contents):
        if isinstance(content, Mapping) and content.get("role", "user") == "user":
            return parts_text(content.get("parts"))
    return ""


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(p if isinstance(p, str) else str(p) for p in prompt)
    return "" if prompt is None else str(prompt)


def prompt_of(body: Mapping[str, Any]) -> str:
    """The text the answer is derived from: the last user message of a chat request (OpenAI,
    Anthropic or Gemini), or the ``prompt`` of a legacy completions request (a list of prompts is joined
    with newlines). A conversation that ends with tool results (OpenAI ``tool`` messages, an
    Anthropic user turn of ``tool_result`` blocks) is answered from their text, joined with
    newlines, so a tool round trip ends in the same answer in both formats."""
    contents = body.get("contents")  # Gemini's
    if isinstance(contents, list):
        return _gemini_prompt(contents)
    messages = body.get("messages")
    if isinstance(messages, list):
        results: list[str] = []
        for message in reversed(messages):
            if not isinstance(message, Mapping):
                continue
            role = message.get("role")
            if role == "tool":
                results.append(content_text(message.get("content")))
            elif results:
                break
            elif role == "user":
                return content_text(message.get("content"))
        return "\n".join(reversed(results))
    return _prompt_text(body.get("prompt"))


def prompt_tokens_of(body: Mapping[str, Any]) -> int:
    """Usage ``prompt_tokens``: words in every message of a chat request (and in an Anthropic
    ``system``, a Gemini ``systemInstruction``), else in the prompt."""
    contents = body.get("contents")
    if isinstance(contents, list):
        instruction = body.get("systemInstruction")
        turns = [*contents, instruction] if isinstance(instruction, Mapping) else contents
        return sum(
            count_tokens(parts_text(c.get("parts"))) for c in turns if isinstance(c, Mapping)
        )
    messages = body.get("messages")
    if isinstance(messages, list):
        system = count_tokens(content_text(body.get("system")))
        return system + sum(
            count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, Mapping)
        )
    return count_tokens(_prompt_text(body.get("prompt")))


def embedding_inputs(value: Any) -> list[str]:
    """The texts of an embeddings ``input``: a string, a list of strings, or token lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [" ".join(str(v) for v in value)]
        texts = []
        for item in value:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list):
                texts.append(" ".join(str(v) for v in item))
            else:
                raise ValueError("'input' must be a string or a list of strings")
        return texts
    raise ValueError("'input' must be a string or a list of strings")


def embedding_vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector of ``dims`` floats for ``text``."""
    stream = _digest_stream("embedding", text)
    raw = []
    for _ in range(dims):
        word = int.from_bytes(bytes(next(stream) for _ in range(4)), "big")
        raw.append(word / 0xFFFFFFFF * 2 - 1)
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embedding_base64(vector: list[float]) -> str:
    """``vector`` as OpenAI's ``encoding_format="base64"``: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
