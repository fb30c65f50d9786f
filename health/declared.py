"""Each config setting declared once, on the dataclass field that holds it.

`setting(default, doc, live=..., ...)` is a `dataclasses.field` whose metadata says all the
rest: the type is the field's annotation, the default the field's default, and the metadata
the doc string, the checks (positive, minimum, maximum, choices), whether the value is a
secret (redacted in views) and whether a reload applies it live or it needs a restart. The
decoder (`gateway.config.sections`), the JSON Schema (`gateway.config.schema_fields`), the
`/admin/config` view and the reload report (`gateway.config.diff`) all read these fields:
nothing here is repeated elsewhere.

`metadata=nested(doc)` marks a nested section (`health.breaker`) and `metadata=INLINE` a
dataclass whose settings sit at its parent's level in the YAML (`HealthConfig.settings` holds
`window_s`...).

It lives in `health`, the lowest of Turnout's packages, and imports nothing of Turnout's,
so every layer (health's own settings, the retry budget, tracing, the gateway's config model)
declares its settings with it without an import cycle.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
KEY = "turnout"  # the metadata key of a field's declaration


@dataclass(frozen=True, slots=True)
class Setting:
    """What a scalar setting is, beside its type and default."""

    doc: str
    live: bool  # a reload applies it; else it takes effect at the next restart
    positive: bool = False  # > 0
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    loose: bool = False  # the choices are offered to editors; the loader takes any value
    lower: bool = False  # stripped and lower-cased when read (names, enum values)
    or_default: bool = False  # an empty string reads as the default
    secret: bool = False  # never shown: views redact it, the reload report names only its key
    key: str = ""  # the YAML key, when it is not the field's name
    pattern: str = ""  # a regular expression for editors (the loader checks it itself)


@dataclass(frozen=True, slots=True)
class Part:
    """A nested dataclass: a sub-section of its own (`doc`), or inline at its parent's level."""

    doc: str = ""
    inline: bool = False
    key: str = ""


def setting(
    default: T,
    doc: str,
    *,
    live: bool,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    loose: bool = False,
    lower: bool = False,
    or_default: bool = False,
    secret: bool = False,
    key: str = "",
    pattern: str = "",
) -> T:
    meta = Setting(
        doc,
        live,
        positive,
        minimum,
        maximum,
        choices,
        loose,
        lower,
        or_default,
        secret,
        key,
        pattern,
    )
    out: T = dataclasses.field(default=default, repr=not secret, metadata={KEY: meta})
    return out


def nested(doc: str) -> dict[str, Part]:
    """The metadata of a nested section: `field(default_factory=..., metadata=nested(doc))`."""
    return {KEY: Part(doc)}


INLINE = {KEY: Part(inline=True)}  # `field(default_factory=..., metadata=INLINE)`


@dataclass(frozen=True, slots=True)
class Entry:
    """One declared field of a section: its YAML key, the dataclass field and its type."""

    key: str
    field: dataclasses.Field[Any]
    hint: Any
    meta: Setting | Part

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def default(self) -> Any:
        f = self.field
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None

    @property
    def kind(self) -> type[Any]:
        """The scalar type: `float | None` is float."""
        hint = self.hint
        if typing.get_origin(hint) is not None:
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        kind: type[Any] = hint
        return kind

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.hint)


def entries(cls: type[Any]) -> Iterator[Entry]:
    """The declared fields of `cls`, in order (undeclared fields are not config keys)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(KEY)
        if isinstance(meta, Setting | Part):
            yield Entry(meta.key or f.name, f, hints[f.name], meta)


def flat(cls: type[Any]) -> Iterator[Entry]:
    """The keys of one YAML mapping: `cls`'s entries with inline parts expanded."""
    for e in entries(cls):
        if isinstance(e.meta, Part) and e.meta.inline:
            yield from flat(e.hint)
        else:
            yield e


def entry(cls: type[Any], name: str) -> Entry:
    """The declaration of field `name` of `cls` (for decoders that read it by hand)."""
    for e in entries(cls):
        if e.name == name:
            return e
    raise KeyError(f"{cls.__name__}.{name} is not a declared setting")
