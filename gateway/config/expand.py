"""`${VAR}` and `${VAR:-default}` expansion in config strings; `$${` is a literal `${`."""

from __future__ import annotations

import re
from collections.abc import Mapping

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class UnsetVariable(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"environment variable {name} is not set (use ${{{name}:-default}})")
        self.name = name


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand references in `text` from `env`. Raises UnsetVariable for `${X}` with X unset."""
    if "$" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name is None:
            raise ValueError(
                "invalid ${...} reference (write ${NAME} or ${NAME:-default}, $${ for a literal)"
            )
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise UnsetVariable(name)
            return default
        return value

    return _REF.sub(sub, text)
