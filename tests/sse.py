"""Reading SSE bodies in tests (a client's view, independent of the gateway's own parser)."""

from __future__ import annotations


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for every event of an SSE body."""
    out: list[tuple[str | None, str]] = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
        out.append((name, "\n".join(data)))
    return out
