"""One request's way through the gateway: proxy (read, resolve the route, rank) -> exchange
(the attempts) -> settle (what each attempt taught) -> streamed (a committed stream, and its
continuation elsewhere when it fails) | failure (the one error when nothing answered); answers
remembers who answered, for feedback."""
